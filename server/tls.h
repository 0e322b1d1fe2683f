/* TLS for the listen_tcp line protocol: a server context built from the
 * configuration (certificate, key, optional client CA) and one TLS state
 * per connection over memory BIOs, so that conn.c keeps libuv's stream
 * I/O and its own memory bounds. Loop thread only. */
#ifndef ALIGND_TLS_H
#define ALIGND_TLS_H

#include <stddef.h>

struct srv_tls;                  /* a server context: certificate, key, client CA */
struct tls_conn;                 /* one connection's TLS state */

/* Reads and checks cert_file (PEM chain), key_file (its private key, which
 * must match) and, when ca_file is not empty, the CAs whose client
 * certificates are required. min_version "1.2" or "1.3"; ciphers the
 * TLS 1.2 cipher list ("" for OpenSSL's default). 0, or -1 with err. */
int srv_tls_new(const char *cert_file, const char *key_file, const char *ca_file,
                const char *min_version, const char *ciphers, struct srv_tls **out,
                char *err, size_t errlen);
void srv_tls_free(struct srv_tls **t);
/* 1 when client certificates are required and verified. */
int srv_tls_verifies_clients(const struct srv_tls *t);

/* A connection on t (which it references: a reload may free t first). */
struct tls_conn *tls_conn_new(struct srv_tls *t);
void tls_conn_free(struct tls_conn **c);

/* Ciphertext read from the socket. 0, or -1 when out of memory. */
int tls_conn_feed(struct tls_conn *c, const void *data, size_t len);
/* Advances the handshake with what was fed: 1 done, 0 more bytes needed,
 * -1 failed (a reason in err). Its output waits in tls_conn_pending(). */
int tls_conn_handshake(struct tls_conn *c, char *err, size_t errlen);
/* Plaintext after the handshake: > 0 bytes, 0 none until more is fed,
 * TLS_CONN_EOF the peer's close_notify, -1 an error (reason in err). */
#define TLS_CONN_EOF (-2)
long tls_conn_read(struct tls_conn *c, void *buf, size_t len, char *err, size_t errlen);
/* Encrypts len bytes of plaintext into the pending output. 0 or -1. */
int tls_conn_write(struct tls_conn *c, const void *data, size_t len);
/* Queues close_notify. */
void tls_conn_shutdown(struct tls_conn *c);
/* Ciphertext waiting to go to the socket, and taking it (up to len). */
size_t tls_conn_pending(const struct tls_conn *c);
size_t tls_conn_take(struct tls_conn *c, void *buf, size_t len);

/* After the handshake: "TLSv1.3 TLS_AES_256_GCM_SHA384" and the verified
 * client certificate's subject common name ("" without one), untrusted
 * text for log_clean(). */
void tls_conn_describe(const struct tls_conn *c, char *proto, size_t plen,
                       char *cn, size_t cnlen);

#endif
