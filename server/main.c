/* alignd: command line, configuration, the listening socket, signals and
 * the event loop. Loop thread. Security stance: runs unprivileged where it
 * can; trusts nothing it reads from the socket, a message or DNS; the
 * socket's mode and group decide who may ask it. */
#include "server/config.h"
#include "server/dispatch.h"
#include "server/history.h"
#include "server/http.h"
#include "server/log.h"
#include "server/srv.h"
#include "server/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

#define ALIGND_VERSION "0.1.0"

/* Service-manager readiness protocol (sd_notify(3)): a no-op when
 * NOTIFY_SOCKET is unset or alignd was built without libsystemd. */
static void notify(const char *state)
{
#ifdef HAVE_LIBSYSTEMD
	(void)sd_notify(0, state);
#else
	(void)state;
#endif
}

struct overrides {                /* --set and flags, re-applied on SIGHUP */
	char **kv;
	size_t n;
};

static struct overrides ovr;
static struct srv server;
static char created_dir[108];     /* the socket directory, when we made it */

static void usage(FILE *out)
{
	fprintf(out,
	"usage: alignd [options]\n"
	"  -c, --config FILE        read FILE (key = value lines); without it the\n"
	"                           built-in defaults apply (alignd --print-config)\n"
	"  -s, --socket PATH        listen on PATH (overrides 'socket')\n"
	"  -w, --workers N          worker threads for CPU work (0 = one per core)\n"
	"      --unbound-config F   extra unbound.conf-style settings for the resolver\n"
	"      --authserv-id ID     authserv-id of Authentication-Results\n"
	"      --log stderr|syslog  where log lines go\n"
	"  -d, --debug              debug logging\n"
	"  -o, --set KEY=VALUE      set any configuration key (repeatable)\n"
	"      --check-config       validate the configuration and exit (0 = valid)\n"
	"      --print-config       print the effective configuration and exit\n"
	"  -V, --version            print the version and exit\n"
	"  -h, --help               this text\n");
}

static int add_override(const char *key, const char *value)
{
	size_t len = strlen(key) + strlen(value) + 2;
	char *kv = malloc(len);
	char **nkv = realloc(ovr.kv, (ovr.n + 1) * sizeof(*nkv));
	if (!kv || !nkv) {
		free(kv);
		return -1;
	}
	snprintf(kv, len, "%s=%s", key, value);
	ovr.kv = nkv;
	ovr.kv[ovr.n++] = kv;
	return 0;
}

static int apply_overrides(struct srv_config *c, char *err, size_t errlen)
{
	for (size_t i = 0; i < ovr.n; i++) {
		char key[128];
		const char *eq = strchr(ovr.kv[i], '=');
		size_t kl = eq ? (size_t)(eq - ovr.kv[i]) : 0;
		if (!eq || kl == 0 || kl >= sizeof(key)) {
			snprintf(err, errlen, "--set %s: want KEY=VALUE", ovr.kv[i]);
			return -1;
		}
		memcpy(key, ovr.kv[i], kl);
		key[kl] = '\0';
		char e2[512];
		if (cfg_set(c, key, eq + 1, e2, sizeof(e2)) < 0) {
			snprintf(err, errlen, "command line: %s", e2);
			return -1;
		}
	}
	return 0;
}

static struct srv_config *load_config(const char *path, char *err, size_t errlen)
{
	struct srv_config *c = cfg_load(path, err, errlen);
	if (c && (apply_overrides(c, err, errlen) < 0 || cfg_finalize(c, err, errlen) < 0))
		cfg_unref(&c);
	return c;
}

/* Refuses to steal the socket of a running instance; removes a stale one. */
static int prepare_socket_path(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "socket path too long: %s", path);
		return -1;
	}
	struct stat st;
	if (lstat(path, &st) < 0) {
		if (errno != ENOENT) {
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
			return -1;
		}
		/* create the last directory level if it is missing (/run/alignd) */
		char dir[sizeof(sa.sun_path)];
		snprintf(dir, sizeof(dir), "%s", path);
		char *slash = strrchr(dir, '/');
		if (slash && slash != dir) {
			*slash = '\0';
			if (mkdir(dir, 0755) == 0)
				snprintf(created_dir, sizeof(created_dir), "%s", dir);
			else if (errno != EEXIST) {
				snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
				return -1;
			}
		}
		return 0;
	}
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen, "%s exists and is not a socket; not touching it", path);
		return -1;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	int rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	int e = errno;
	close(fd);
	if (rc == 0) {
		snprintf(err, errlen, "another instance is listening on %s", path);
		return -1;
	}
	if (e != ECONNREFUSED) {
		snprintf(err, errlen, "%s: cannot tell whether it is in use: %s", path, strerror(e));
		return -1;
	}
	if (unlink(path) < 0) {
		snprintf(err, errlen, "cannot remove stale socket %s: %s", path, strerror(errno));
		return -1;
	}
	log_msg(LOG_LVL_INFO, "removed stale socket %s", path);
	return 0;
}

static void on_connection(uv_stream_t *l, int status)
{
	struct srv *s = l->data;
	if (status < 0) {
		log_msg(LOG_LVL_WARN, "accept: %s", uv_strerror(status));
		return;
	}
	conn_accept(s, l, 0);
}

static void on_tcp_connection(uv_stream_t *l, int status)
{
	struct srv *s = l->data;
	if (status < 0) {
		log_msg(LOG_LVL_WARN, "accept (listen_tcp): %s", uv_strerror(status));
		return;
	}
	conn_accept(s, l, 1);
}

/* listen_tcp: the line protocol for MTA pools on other hosts; who may
 * connect is allowed_networks (conn.c). */
static int start_tcp_listening(struct srv *s, char *err, size_t errlen)
{
	const struct srv_config *c = s->cfg;
	if (!c->listen_tcp || !*c->listen_tcp) {
		if (c->tls)
			log_msg(LOG_LVL_WARN, "tls_cert_file is set but listen_tcp is not: "
			        "TLS applies to listen_tcp only");
		return 0;
	}
	struct sockaddr_storage sa;
	if (srv_parse_tcp_listen("listen_tcp", c->listen_tcp, c->tcp_allow_remote, &sa,
	                         err, errlen) < 0)
		return -1;
	uv_tcp_init(s->loop, &s->tcp_listener);
	s->tcp_listener.data = s;
	int rc = uv_tcp_bind(&s->tcp_listener, (const struct sockaddr *)&sa, 0);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&s->tcp_listener, SOMAXCONN, on_tcp_connection);
	if (rc < 0) {
		snprintf(err, errlen, "listen_tcp %s: %s", c->listen_tcp, uv_strerror(rc));
		uv_close((uv_handle_t *)&s->tcp_listener, NULL);
		return -1;
	}
	s->tcp_listening = 1;
	log_msg(LOG_LVL_INFO, "line protocol also on TCP %s (allowed_networks: %s; %s)",
	        c->listen_tcp, c->allowed_networks,
	        !c->tls ? "plain text" : srv_tls_verifies_clients(c->tls)
	                ? "TLS, client certificates required" : "TLS, no client certificates");
	if (c->tcp_allow_remote && !srv_tls_verifies_clients(c->tls))
		log_msg(LOG_LVL_WARN, "listen_tcp %s accepts remote clients without TLS client "
		        "certificates (tls_client_ca_file): allowed_networks alone decides who may "
		        "ask%s", c->listen_tcp, c->tls ? "" : ", and mail crosses the network in plain text");
	return 0;
}

int srv_socket_group(const struct srv_config *c, const char *path, char *err, size_t errlen)
{
	if (!c->socket_group || !*c->socket_group)
		return 0;
	struct group *g = getgrnam(c->socket_group);
	if (!g) {
		snprintf(err, errlen, "socket_group '%s': no such group", c->socket_group);
		return -1;
	}
	if (chown(path, (uid_t)-1, g->gr_gid) < 0) {
		snprintf(err, errlen, "chown %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

static int start_listening(struct srv *s, char *err, size_t errlen)
{
	const struct srv_config *c = s->cfg;
	if (prepare_socket_path(c->socket, err, errlen) < 0)
		return -1;
	uv_pipe_init(s->loop, &s->listener, 0);
	s->listener.data = s;
	mode_t old = umask(0177);
	int rc = uv_pipe_bind(&s->listener, c->socket);
	umask(old);
	if (rc < 0) {
		snprintf(err, errlen, "bind %s: %s", c->socket, uv_strerror(rc));
		uv_close((uv_handle_t *)&s->listener, NULL);
		return -1;
	}
	if (chmod(c->socket, c->socket_mode) < 0) {
		snprintf(err, errlen, "chmod %s: %s", c->socket, strerror(errno));
		goto fail;
	}
	if (srv_socket_group(c, c->socket, err, errlen) < 0)
		goto fail;
	/* the kernel caps it at net.core.somaxconn; a burst of MTA processes
	 * connecting at once waits in this queue */
	rc = uv_listen((uv_stream_t *)&s->listener, SOMAXCONN, on_connection);
	if (rc < 0) {
		snprintf(err, errlen, "listen %s: %s", c->socket, uv_strerror(rc));
		goto fail;
	}
	s->listening = 1;
	return 0;
fail:
	uv_close((uv_handle_t *)&s->listener, NULL);
	unlink(c->socket);
	return -1;
}

/* Started as root with `user` set: give up root for good before serving.
 * The socket (and its directory, if we made it) passes to that user so a
 * later shutdown can remove it; nothing else needs root after the bind. */
static int drop_privileges(const struct srv_config *c, char *err, size_t errlen)
{
	if (!c->user || !*c->user)
		return 0;
	if (geteuid() != 0) {
		log_msg(LOG_LVL_WARN, "user = %s ignored: not started as root", c->user);
		return 0;
	}
	struct passwd *pw = getpwnam(c->user);
	if (!pw) {
		snprintf(err, errlen, "user: no user named '%s'", c->user);
		return -1;
	}
	uid_t uid = pw->pw_uid;
	gid_t gid = pw->pw_gid;
	if (c->group && *c->group) {
		struct group *g = getgrnam(c->group);
		if (!g) {
			snprintf(err, errlen, "group: no group named '%s'", c->group);
			return -1;
		}
		gid = g->gr_gid;
	}
	if (uid == 0) {
		snprintf(err, errlen, "user: refusing to run as root (user = %s)", c->user);
		return -1;
	}
	/* the socket keeps its group (socket_group) and mode */
	if (chown(c->socket, uid, (gid_t)-1) < 0 ||
	    (created_dir[0] && chown(created_dir, uid, gid) < 0)) {
		snprintf(err, errlen, "chown for user %s: %s", c->user, strerror(errno));
		return -1;
	}
	if (setgroups(1, &gid) < 0 || setgid(gid) < 0 || setuid(uid) < 0) {
		snprintf(err, errlen, "dropping to %s: %s", c->user, strerror(errno));
		return -1;
	}
	if (setuid(0) == 0) {
		snprintf(err, errlen, "could regain root after dropping privileges");
		return -1;
	}
	/* no execve()'d helper could gain privileges either */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		snprintf(err, errlen, "prctl(PR_SET_NO_NEW_PRIVS): %s", strerror(errno));
		return -1;
	}
	log_msg(LOG_LVL_INFO, "running as user %s (uid %u, gid %u)", c->user,
	        (unsigned)uid, (unsigned)gid);
	return 0;
}

/* pid_file: written whole (a reader never sees a partial number) and
 * readable by all; 0, or -1 with err set. */
static int write_pid_file(const struct srv_config *c, char *err, size_t errlen)
{
	if (!c->pid_file || !*c->pid_file)
		return 0;
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof tmp, "%s.new", c->pid_file) >= (int)sizeof tmp) {
		snprintf(err, errlen, "pid_file %s: name too long", c->pid_file);
		return -1;
	}
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0) {
		snprintf(err, errlen, "pid_file %s: %s", c->pid_file, strerror(errno));
		return -1;
	}
	char line[32];
	int n = snprintf(line, sizeof line, "%ld\n", (long)getpid());
	int ok = write(fd, line, (size_t)n) == n && fchmod(fd, 0644) == 0;
	ok = close(fd) == 0 && ok;
	if (!ok || rename(tmp, c->pid_file) < 0) {
		snprintf(err, errlen, "pid_file %s: %s", c->pid_file, strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}

static enum log_format log_format_of(const struct srv_config *c)
{
	return strcmp(c->log_format, "json") == 0 ? LOG_FMT_JSON : LOG_FMT_TEXT;
}

static void close_if_open(uv_handle_t *h)
{
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

void srv_maybe_finish(struct srv *s)
{
	if (!s->stopping || s->n_conns > 0 || s->stats.scans_in_flight > 0)
		return;
	if (s->stopping == 2)
		return;
	s->stopping = 2;
	log_msg(LOG_LVL_INFO, "all connections closed and scans finished; exiting");
	dispatch_close(s);
	history_stop(s);
	close_if_open((uv_handle_t *)&s->shutdown_timer);
	close_if_open((uv_handle_t *)&s->sig_term);
	close_if_open((uv_handle_t *)&s->sig_int);
	close_if_open((uv_handle_t *)&s->sig_hup);
}

static void on_shutdown_timer(uv_timer_t *t)
{
	struct srv *s = t->data;
	if (s->n_conns > 0 || s->stats.scans_in_flight > 0) {
		log_msg(LOG_LVL_WARN, "shutdown timeout: closing %llu connections, %llu scans unfinished",
		        (unsigned long long)s->n_conns, (unsigned long long)s->stats.scans_in_flight);
		conn_close_all(s);
	}
	/* abandoned scans end with their DNS deadlines; do not wait forever */
	uv_timer_start(t, on_shutdown_timer, 5000, 0);
	if (s->n_conns == 0 && s->stats.scans_in_flight > 0 && t->data == s) {
		static int rounds;
		if (++rounds > 2) {
			log_msg(LOG_LVL_ERR, "scans did not settle after shutdown; exiting anyway");
			exit(0);
		}
	}
}

static void begin_shutdown(struct srv *s, const char *why)
{
	if (s->stopping)
		return;
	s->stopping = 1;
	notify("STOPPING=1");
	log_msg(LOG_LVL_INFO, "%s: no new connections; finishing %llu scans (at most %llums)",
	        why, (unsigned long long)s->stats.scans_in_flight,
	        (unsigned long long)s->cfg->shutdown_timeout);
	if (s->listening) {
		uv_close((uv_handle_t *)&s->listener, NULL);
		unlink(s->cfg->socket);
		s->listening = 0;
	}
	if (s->tcp_listening) {
		uv_close((uv_handle_t *)&s->tcp_listener, NULL);
		s->tcp_listening = 0;
	}
	http_shutdown(s);
	uv_timer_start(&s->shutdown_timer, on_shutdown_timer, s->cfg->shutdown_timeout, 0);
	conn_shutdown_all(s);
	srv_maybe_finish(s);
}

static void on_signal(uv_signal_t *h, int signum)
{
	struct srv *s = h->data;
	if (signum == SIGHUP) {
		char err[512];
		const char *path = s->cfg->path;
		notify("RELOADING=1");
		struct srv_config *n = load_config(path, err, sizeof(err));
		if (!n) {
			log_msg(LOG_LVL_ERR, "reload failed, keeping the running configuration: %s", err);
			notify("READY=1");
			return;
		}
		/* what is bound at start-up stays as it is until a restart */
		static const char *const fixed[] = { "socket", "workers", "DNS settings",
		                                     "http_listen", "user/group", "listen_tcp" };
		int changed[6] = {
			strcmp(n->socket, s->cfg->socket) != 0,
			n->workers != s->cfg->workers,
			strcmp(n->dns_mode, s->cfg->dns_mode) || strcmp(n->dns_forwarders, s->cfg->dns_forwarders) ||
			strcmp(n->unbound_config, s->cfg->unbound_config) ||
			strcmp(n->dns_trust_anchor, s->cfg->dns_trust_anchor) ||
			n->dns_timeout != s->cfg->dns_timeout,
			strcmp(n->http_listen, s->cfg->http_listen) != 0,
			strcmp(n->user, s->cfg->user) != 0 || strcmp(n->group, s->cfg->group) != 0,
			strcmp(n->listen_tcp, s->cfg->listen_tcp) != 0 ||
			n->tcp_allow_remote != s->cfg->tcp_allow_remote,
		};
		for (int i = 0; i < 6; i++)
			if (changed[i])
				log_msg(LOG_LVL_WARN, "reload: %s changed; takes effect after a restart", fixed[i]);
		free(n->socket);
		n->socket = strdup(s->cfg->socket);
		if (!n->socket) {
			cfg_unref(&n);
			notify("READY=1");
			return;
		}
		n->workers = s->cfg->workers;
		if (!n->tls != !s->cfg->tls)
			log_msg(LOG_LVL_WARN, "reload: TLS on listen_tcp turned %s for new connections",
			        n->tls ? "on" : "off");
		else if (n->tls)
			log_msg(LOG_LVL_INFO, "reload: TLS certificate, key and client CA read again; "
			        "new connections use them");
		log_open(n->log == CFG_LOG_SYSLOG, n->syslog_facility, n->log_debug, log_format_of(n));
		cfg_unref(&s->cfg);
		s->cfg = n;
		s->stats.reloads++;
		notify("READY=1");
		log_msg(LOG_LVL_INFO, "configuration reloaded from %s", s->cfg->path ? s->cfg->path : "built-in defaults");
		return;
	}
	begin_shutdown(s, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static unsigned cores(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)n : 1;
}

int main(int argc, char **argv)
{
	enum { OPT_UNBOUND = 256, OPT_AUTHSERV, OPT_LOG, OPT_CHECK, OPT_PRINT };
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "socket", required_argument, NULL, 's' },
		{ "workers", required_argument, NULL, 'w' },
		{ "unbound-config", required_argument, NULL, OPT_UNBOUND },
		{ "authserv-id", required_argument, NULL, OPT_AUTHSERV },
		{ "log", required_argument, NULL, OPT_LOG },
		{ "debug", no_argument, NULL, 'd' },
		{ "set", required_argument, NULL, 'o' },
		{ "check-config", no_argument, NULL, OPT_CHECK },
		{ "print-config", no_argument, NULL, OPT_PRINT },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config_path = NULL;
	int check = 0, print = 0, opt, bad = 0;
	while ((opt = getopt_long(argc, argv, "c:s:w:do:Vh", opts, NULL)) != -1) {
		int rc = 0;
		switch (opt) {
		case 'c': config_path = optarg; break;
		case 's': rc = add_override("socket", optarg); break;
		case 'w': rc = add_override("workers", optarg); break;
		case OPT_UNBOUND: rc = add_override("unbound_config", optarg); break;
		case OPT_AUTHSERV: rc = add_override("authserv_id", optarg); break;
		case OPT_LOG: rc = add_override("log", optarg); break;
		case 'd': rc = add_override("log_debug", "yes"); break;
		case 'o': {
			const char *eq = strchr(optarg, '=');
			if (!eq) {
				fprintf(stderr, "alignd: --set %s: want KEY=VALUE\n", optarg);
				return 2;
			}
			char key[128];
			size_t kl = (size_t)(eq - optarg);
			if (kl == 0 || kl >= sizeof(key)) {
				fprintf(stderr, "alignd: --set %s: bad key\n", optarg);
				return 2;
			}
			memcpy(key, optarg, kl);
			key[kl] = '\0';
			rc = add_override(key, eq + 1);
			break;
		}
		case OPT_CHECK: check = 1; break;
		case OPT_PRINT: print = 1; break;
		case 'V': printf("alignd %s\n", ALIGND_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		default: bad = 1; break;
		}
		if (rc < 0) {
			fprintf(stderr, "alignd: out of memory\n");
			return 1;
		}
	}
	if (bad || optind < argc) {
		usage(stderr);
		return 2;
	}
	char err[1024];
	struct srv_config *cfg = load_config(config_path, err, sizeof(err));
	if (!cfg) {
		fprintf(stderr, "alignd: %s\n", err);
		return check ? 1 : 78;     /* EX_CONFIG */
	}
	if (check || print) {
		if (print)
			cfg_print(cfg, stdout);
		if (check)
			printf("alignd: configuration %s is valid\n",
			       config_path ? config_path : "(built-in defaults)");
		cfg_unref(&cfg);
		return 0;
	}

	log_open(cfg->log == CFG_LOG_SYSLOG, cfg->syslog_facility, cfg->log_debug, log_format_of(cfg));
	signal(SIGPIPE, SIG_IGN);

	struct srv *s = &server;
	s->cfg = cfg;
	s->workers = cfg->workers ? cfg->workers : cores();
	/* libuv sizes its pool once, at the first piece of queued work */
	char nbuf[16];
	snprintf(nbuf, sizeof(nbuf), "%u", s->workers);
	setenv("UV_THREADPOOL_SIZE", nbuf, 1);

	s->loop = uv_default_loop();
	s->started_ms = uv_now(s->loop);
	uv_timer_init(s->loop, &s->shutdown_timer);
	s->shutdown_timer.data = s;
	uv_signal_init(s->loop, &s->sig_term);
	uv_signal_init(s->loop, &s->sig_int);
	uv_signal_init(s->loop, &s->sig_hup);
	s->sig_term.data = s->sig_int.data = s->sig_hup.data = s;
	uv_signal_start(&s->sig_term, on_signal, SIGTERM);
	uv_signal_start(&s->sig_int, on_signal, SIGINT);
	uv_signal_start(&s->sig_hup, on_signal, SIGHUP);

	if (dispatch_init(s, err, sizeof(err)) < 0) {
		log_msg(LOG_LVL_ERR, "cannot start the checks: %s", err);
		return 1;
	}
	if (start_listening(s, err, sizeof(err)) < 0) {
		log_msg(LOG_LVL_ERR, "%s", err);
		dispatch_close(s);
		return 1;
	}
	if (start_tcp_listening(s, err, sizeof(err)) < 0 || http_start(s, err, sizeof(err)) < 0) {
		log_msg(LOG_LVL_ERR, "%s", err);
		unlink(cfg->socket);
		dispatch_close(s);
		return 1;
	}
	/* The pid file is written while still root, where init systems keep
	 * it (/run), and stays root's: the unprivileged daemon can neither
	 * fail to create it nor point it at another process. */
	if (write_pid_file(cfg, err, sizeof(err)) < 0) {
		log_msg(LOG_LVL_ERR, "%s", err);
		unlink(cfg->socket);
		dispatch_close(s);
		return 1;
	}
	if (history_prepare(cfg, err, sizeof(err)) < 0 ||
	    drop_privileges(cfg, err, sizeof(err)) < 0 ||
	    history_start(s, err, sizeof(err)) < 0) {
		log_msg(LOG_LVL_ERR, "%s", err);
		unlink(cfg->socket);
		dispatch_close(s);
		return 1;
	}
	log_msg(LOG_LVL_INFO, "alignd %s listening on %s (%u workers, config: %s)",
	        ALIGND_VERSION, cfg->socket, s->workers,
	        config_path ? config_path : "built-in defaults");
	notify("READY=1");

	uv_run(s->loop, UV_RUN_DEFAULT);

	if (s->cfg->pid_file && *s->cfg->pid_file && unlink(s->cfg->pid_file) < 0 &&
	    errno != ENOENT)
		/* a root-owned directory after the drop: init removes it */
		log_msg(LOG_LVL_DEBUG, "pid_file %s not removed: %s", s->cfg->pid_file,
		        strerror(errno));
	int rc = uv_loop_close(s->loop);
	if (rc != 0)
		log_msg(LOG_LVL_DEBUG, "loop closed with handles open: %s", uv_strerror(rc));
	cfg_unref(&s->cfg);
	for (size_t i = 0; i < ovr.n; i++)
		free(ovr.kv[i]);
	free(ovr.kv);
	log_msg(LOG_LVL_INFO, "stopped");
	return 0;
}
