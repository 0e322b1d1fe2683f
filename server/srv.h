/* The daemon's shared state: the loop, the current configuration, the
 * listener, the connection list, counters and the check engines. One per
 * process, owned by main(), loop thread only. */
#ifndef ALIGND_SRV_H
#define ALIGND_SRV_H

#include <stdint.h>
#include <uv.h>

#include "server/config.h"
#include "server/metrics.h"

struct conn;
struct engines;
struct http_srv;
struct history;

struct srv_stats {
	uint64_t connections_total;
	uint64_t connections_rejected;
	uint64_t connections_shed;     /* idle ones closed to admit a new client */
	uint64_t requests_busy;        /* refused: max_inflight_bytes reached */
	uint64_t tls_handshakes;       /* listen_tcp TLS handshakes completed */
	uint64_t tls_handshake_failures;  /* failed or not finished in tls_handshake_timeout */
	uint64_t sign_signed;          /* SIGN requests answered with signatures */
	uint64_t sign_refused;         /* SIGN answered 4xx (no table, no key for the domain, bad message) */
	uint64_t sign_failed;          /* SIGN answered 5xx */
	uint64_t signatures_rsa;       /* DKIM-Signature fields made, rsa-sha256 */
	uint64_t signatures_ed25519;   /* and ed25519-sha256 */
	uint64_t requests_total;
	uint64_t scans_total;
	uint64_t scans_in_flight;
	uint64_t scans_abandoned;
	uint64_t errors_4xx;
	uint64_t errors_5xx;
	uint64_t timeouts;
	uint64_t bytes_in;
	uint64_t action_accept;
	uint64_t action_quarantine;
	uint64_t action_reject;
	uint64_t action_tempfail;
	uint64_t reloads;
	uint64_t override_forwarded;
	uint64_t override_trusted_forwarder;
	uint64_t override_mailing_list;
	uint64_t override_local_policy;
	uint64_t override_sampled_out;
	struct metrics_outcomes out;   /* results by kind, for /metrics */
};

#define SRV_LISTENERS 3   /* UNIX socket, listen_tcp, http_listen */

struct srv {
	uv_loop_t *loop;
	struct srv_config *cfg;       /* current; scans hold their own reference */
	uv_pipe_t listener;
	int listening;
	uv_tcp_t tcp_listener;        /* listen_tcp */
	int tcp_listening;
	struct conn *conns;           /* doubly linked list */
	uint64_t n_conns;
	uint64_t next_conn_id;
	struct srv_stats stats;
	uint64_t started_ms;
	int stopping;
	uv_timer_t shutdown_timer;
	uv_signal_t sig_term, sig_int, sig_hup;
	char readbuf[64 * 1024];      /* shared read buffer: reads are processed at once */
	struct engines *eng;          /* check libraries (server/dispatch.c) */
	unsigned workers;             /* worker-pool size in effect */
	struct http_srv *http;        /* rspamd-compatible endpoint (server/http.c), or NULL */
	struct history *hist;         /* history writer (server/history.c), or NULL */
	uint64_t msg_bytes;           /* message bytes held by scans and signing requests */
	/* a client accepted with no memory for its connection (conn.c) */
	union {
		uv_handle_t h;
		uv_stream_t st;
		uv_pipe_t pipe;
		uv_tcp_t tcp;
	} drop;
	int drop_busy;                /* drop is closing */
	uv_stream_t *drop_waiting[SRV_LISTENERS]; /* listeners with a client not yet taken */
};

/* Daemon-wide budget for message bytes (max_inflight_bytes): scan_new()
 * and sign_new() take their announced size from it and give it back when
 * they are freed; a request that does not fit is refused with 503 before
 * either is made. */
static inline int srv_msg_bytes_fit(const struct srv *s, uint64_t n)
{
	uint64_t max = s->cfg->max_inflight_bytes;
	return n <= max && s->msg_bytes <= max - n;
}

#define SRV_BUSY_REASON "busy: too many message bytes in flight (max_inflight_bytes), try again later"

/* conn.c: at max_connections, closes the connection (line protocol or
 * HTTP) that has been idle longest, so a new client can be admitted; 0
 * when one was closed, -1 when none is idle. */
int srv_shed_idle(struct srv *s);

/* conn.c: is a TCP peer inside allowed_networks? who gets its address
 * for the log (both TCP listeners use this). */
int srv_tcp_peer_allowed(const struct srv_config *cfg, const uv_tcp_t *t, char *who,
                         size_t wlen);

struct sockaddr_storage;
/* http.c: "ADDRESS:PORT" or "[v6]:PORT" for the TCP listeners; a
 * non-loopback address only with allow_remote (key names the setting in
 * errors). 0 or -1 with err. */
int srv_parse_tcp_listen(const char *key, const char *v, int allow_remote,
                         struct sockaddr_storage *sa, char *err, size_t errlen);

/* conn.c: for a listener's connection callback that has no memory for
 * the connection: the client libuv already took from the socket is
 * accepted into srv's own handle and closed at once. Left unaccepted it
 * would stop the listener for good. */
void srv_drop_unaccepted(struct srv *s, uv_stream_t *listener);

/* conn.c: accepts a line-protocol client from the UNIX (tcp 0) or the
 * TCP listener (tcp 1) */
void conn_accept(struct srv *s, uv_stream_t *listener, int tcp);
/* Stops reading on every connection; closes idle ones; the others close
 * once their replies are written. */
void conn_shutdown_all(struct srv *s);
void conn_close_all(struct srv *s);

/* main.c: gives a UNIX socket the group socket_group (no-op when unset);
 * 0 or -1 with a reason */
int srv_socket_group(const struct srv_config *c, const char *path, char *err, size_t errlen);

/* main.c: checks whether shutdown can complete */
void srv_maybe_finish(struct srv *s);

#endif
