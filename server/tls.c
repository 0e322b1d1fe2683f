/* TLS for listen_tcp with OpenSSL: the server context and, per
 * connection, an SSL over a pair of memory BIOs. conn.c moves the bytes
 * between the BIOs and the libuv stream. Loop thread only. */
#include "server/tls.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

struct srv_tls {
	SSL_CTX *ctx;
	int verify_clients;
};

struct tls_conn {
	SSL *ssl;
	BIO *in;                     /* ciphertext from the peer; SSL reads it */
	BIO *out;                    /* ciphertext for the peer; SSL writes it */
};

/* The first OpenSSL reason on this thread's queue (the cause; later ones
 * say which call gave up), which is then cleared. */
static void ossl_reason(char *err, size_t errlen, const char *what)
{
	unsigned long e = ERR_peek_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;
	char buf[256] = "unknown error";
	if (!r && e)
		ERR_error_string_n(e, buf, sizeof buf);
	ERR_clear_error();
	snprintf(err, errlen, "%s: %s", what, r ? r : buf);
}

/* Names the file in the error when it cannot even be opened: OpenSSL's
 * "system lib" says less than errno does. */
static int readable(const char *key, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		snprintf(err, errlen, "%s %s: %s", key, path, strerror(errno));
		return -1;
	}
	fclose(f);
	return 0;
}

int srv_tls_new(const char *cert_file, const char *key_file, const char *ca_file,
                const char *min_version, const char *ciphers, struct srv_tls **out,
                char *err, size_t errlen)
{
	*out = NULL;
	char what[600];
	if (readable("tls_cert_file", cert_file, err, errlen) < 0 ||
	    readable("tls_key_file", key_file, err, errlen) < 0 ||
	    (*ca_file && readable("tls_client_ca_file", ca_file, err, errlen) < 0))
		return -1;
	struct srv_tls *t = calloc(1, sizeof(*t));
	if (!t) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	ERR_clear_error();
	t->ctx = SSL_CTX_new(TLS_server_method());
	if (!t->ctx) {
		ossl_reason(err, errlen, "TLS context");
		goto fail;
	}
	int minv = strcmp(min_version, "1.3") == 0 ? TLS1_3_VERSION : TLS1_2_VERSION;
	if (!SSL_CTX_set_min_proto_version(t->ctx, minv)) {
		ossl_reason(err, errlen, "tls_min_version");
		goto fail;
	}
	if (*ciphers && !SSL_CTX_set_cipher_list(t->ctx, ciphers)) {
		snprintf(what, sizeof what, "tls_ciphers '%.200s'", ciphers);
		ossl_reason(err, errlen, what);
		goto fail;
	}
	/* no renegotiation (a client could make us work for it), no
	 * compression (CRIME); our own cipher order */
	SSL_CTX_set_options(t->ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_NO_TICKET |
	                            SSL_OP_CIPHER_SERVER_PREFERENCE);
	/* the buffers of an idle connection are given back; no session
	 * tickets, so nothing is written after the handshake unasked */
	SSL_CTX_set_mode(t->ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_num_tickets(t->ctx, 0);
	SSL_CTX_set_session_cache_mode(t->ctx, SSL_SESS_CACHE_OFF);
	if (SSL_CTX_use_certificate_chain_file(t->ctx, cert_file) != 1) {
		snprintf(what, sizeof what, "tls_cert_file %.500s", cert_file);
		ossl_reason(err, errlen, what);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(t->ctx, key_file, SSL_FILETYPE_PEM) != 1) {
		snprintf(what, sizeof what, "tls_key_file %.500s", key_file);
		ossl_reason(err, errlen, what);
		goto fail;
	}
	if (SSL_CTX_check_private_key(t->ctx) != 1) {
		snprintf(what, sizeof what, "tls_key_file %.250s is not the key of tls_cert_file %.250s",
		         key_file, cert_file);
		ossl_reason(err, errlen, what);
		goto fail;
	}
	if (*ca_file) {
		STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca_file);
		if (!names || sk_X509_NAME_num(names) == 0) {
			if (names)
				sk_X509_NAME_pop_free(names, X509_NAME_free);
			ERR_clear_error();
			snprintf(err, errlen, "tls_client_ca_file %s: no PEM certificate in it", ca_file);
			goto fail;
		}
		SSL_CTX_set_client_CA_list(t->ctx, names);     /* takes names */
		if (SSL_CTX_load_verify_locations(t->ctx, ca_file, NULL) != 1) {
			snprintf(what, sizeof what, "tls_client_ca_file %.500s", ca_file);
			ossl_reason(err, errlen, what);
			goto fail;
		}
		SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
		t->verify_clients = 1;
	}
	*out = t;
	return 0;
fail:
	srv_tls_free(&t);
	return -1;
}

void srv_tls_free(struct srv_tls **tp)
{
	struct srv_tls *t = *tp;
	*tp = NULL;
	if (!t)
		return;
	SSL_CTX_free(t->ctx);
	free(t);
}

int srv_tls_verifies_clients(const struct srv_tls *t)
{
	return t && t->verify_clients;
}

struct tls_conn *tls_conn_new(struct srv_tls *t)
{
	struct tls_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->ssl = SSL_new(t->ctx);          /* holds its own reference to ctx */
	c->in = BIO_new(BIO_s_mem());
	c->out = BIO_new(BIO_s_mem());
	if (!c->ssl || !c->in || !c->out) {
		SSL_free(c->ssl);
		BIO_free(c->in);
		BIO_free(c->out);
		free(c);
		ERR_clear_error();
		return NULL;
	}
	/* an empty memory BIO means "no more yet", not end of file */
	BIO_set_mem_eof_return(c->in, -1);
	BIO_set_mem_eof_return(c->out, -1);
	SSL_set_bio(c->ssl, c->in, c->out);    /* the SSL owns both now */
	SSL_set_accept_state(c->ssl);
	return c;
}

void tls_conn_free(struct tls_conn **cp)
{
	struct tls_conn *c = *cp;
	*cp = NULL;
	if (!c)
		return;
	SSL_free(c->ssl);
	free(c);
}

int tls_conn_feed(struct tls_conn *c, const void *data, size_t len)
{
	const char *p = data;
	while (len > 0) {
		int n = len > INT_MAX ? INT_MAX : (int)len;
		int w = BIO_write(c->in, p, n);
		if (w <= 0) {
			ERR_clear_error();
			return -1;
		}
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

/* The reason of a failed SSL call: the certificate check's, when that
 * was it, else OpenSSL's. */
static void conn_reason(struct tls_conn *c, int rc, char *err, size_t errlen)
{
	int e = SSL_get_error(c->ssl, rc);
	long vr = SSL_get_verify_result(c->ssl);
	if (e == SSL_ERROR_SSL && vr != X509_V_OK) {
		ERR_clear_error();
		snprintf(err, errlen, "client certificate: %s", X509_verify_cert_error_string(vr));
	} else if (e == SSL_ERROR_SSL) {
		ossl_reason(err, errlen, "TLS");
	} else {
		ERR_clear_error();
		snprintf(err, errlen, "TLS error %d", e);
	}
}

int tls_conn_handshake(struct tls_conn *c, char *err, size_t errlen)
{
	ERR_clear_error();
	int rc = SSL_do_handshake(c->ssl);
	if (rc == 1)
		return 1;
	int e = SSL_get_error(c->ssl, rc);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return 0;
	conn_reason(c, rc, err, errlen);
	return -1;
}

long tls_conn_read(struct tls_conn *c, void *buf, size_t len, char *err, size_t errlen)
{
	ERR_clear_error();
	int n = SSL_read(c->ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
	if (n > 0)
		return n;
	int e = SSL_get_error(c->ssl, n);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return 0;
	if (e == SSL_ERROR_ZERO_RETURN)
		return TLS_CONN_EOF;
	conn_reason(c, n, err, errlen);
	return -1;
}

int tls_conn_write(struct tls_conn *c, const void *data, size_t len)
{
	const char *p = data;
	ERR_clear_error();
	while (len > 0) {
		/* into a memory BIO: the whole piece is taken or it failed */
		int n = len > (1u << 20) ? (1 << 20) : (int)len;
		int w = SSL_write(c->ssl, p, n);
		if (w <= 0) {
			ERR_clear_error();
			return -1;
		}
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

void tls_conn_shutdown(struct tls_conn *c)
{
	ERR_clear_error();
	(void)SSL_shutdown(c->ssl);
	ERR_clear_error();
}

size_t tls_conn_pending(const struct tls_conn *c)
{
	return BIO_ctrl_pending(c->out);
}

size_t tls_conn_take(struct tls_conn *c, void *buf, size_t len)
{
	int n = BIO_read(c->out, buf, len > INT_MAX ? INT_MAX : (int)len);
	return n > 0 ? (size_t)n : 0;
}

void tls_conn_describe(const struct tls_conn *c, char *proto, size_t plen,
                       char *cn, size_t cnlen)
{
	snprintf(proto, plen, "%s %s", SSL_get_version(c->ssl),
	         SSL_get_cipher_name(c->ssl) ? SSL_get_cipher_name(c->ssl) : "-");
	if (cnlen)
		cn[0] = '\0';
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
	X509 *peer = SSL_get1_peer_certificate(c->ssl);
#else
	X509 *peer = SSL_get_peer_certificate(c->ssl);
#endif
	if (!peer)
		return;
	if (cnlen && X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName,
	                                       cn, (int)cnlen) < 0)
		cn[0] = '\0';
	X509_free(peer);
	ERR_clear_error();
}
