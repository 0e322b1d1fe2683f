/* Every hard limit of alignd, with its default, in one place.
 * Each run-time limit here has a config key of the same name in lower case
 * without the prefix (see docs/CONFIG.md); the values below are the defaults. */
#ifndef ALIGND_LIMITS_H
#define ALIGND_LIMITS_H

/* ---- protocol and connections (server/, protocol/) ---- */
#define LIM_MAX_MESSAGE_SIZE      (50u * 1024 * 1024) /* max_message_size */
#define LIM_MAX_REQUEST_HEADER    (64u * 1024)        /* max_request_header: request line + fields */
#define LIM_MAX_REQUEST_LINE      4096u               /* max_line_length: one request line */
#define LIM_MAX_REQUEST_FIELDS    256u                /* fields in one request (Rcpt-To included) */
#define LIM_MAX_CONNECTIONS       1024u               /* max_connections */
#define LIM_MAX_INFLIGHT_BYTES    (512ull * 1024 * 1024) /* max_inflight_bytes: message bytes held by every request together */
#define LIM_IDLE_TIMEOUT_MS       60000u              /* idle_timeout: no request started */
#define LIM_REQUEST_TIMEOUT_MS    30000u              /* request_timeout: whole request read */
#define LIM_SCAN_TIMEOUT_MS       20000u              /* scan_timeout: all checks of one message */
#define LIM_SHUTDOWN_TIMEOUT_MS   10000u              /* shutdown_timeout: drain in-flight scans */
#define LIM_TLS_HANDSHAKE_TIMEOUT_MS 10000u            /* tls_handshake_timeout: accept to a finished TLS handshake */
#define LIM_ALLOWED_NETWORKS      64u                 /* entries in allowed_networks */
#define LIM_MAX_PIPELINE          64u                 /* requests queued per connection before reading pauses */
#define LIM_MAX_WRITE_BACKLOG     (1u * 1024 * 1024)  /* heap held by unread replies of one connection before reading pauses */

/* ---- message parsing (checks/msg) ---- */
#define LIM_MAX_HEADER_BLOCK      (1u * 1024 * 1024)  /* max_header_block: message header section */
#define LIM_MAX_HEADER_LINE       (64u * 1024)        /* one (unfolded) message header field */
#define LIM_MAX_HEADERS           10000u              /* header fields in one message */

/* ---- DNS (server/dns) ---- */
#define LIM_DNS_TIMEOUT_MS        5000u               /* dns_timeout: one lookup */
#define LIM_DNS_MAX_INFLIGHT      100000u             /* lookups in flight daemon-wide */
#define LIM_DNS_MAX_NAME          255u                /* RFC 1035 2.3.4 */
#define LIM_DNS_MAX_ANSWER        (64u * 1024)        /* rdata bytes accepted per answer */
#define LIM_DNS_MEMO_SLOTS        16384u              /* answers kept in front of libunbound (power of 2) */
#define LIM_DNS_MEMO_MAX_TTL      3600u               /* seconds an answer is kept there at most */
#define LIM_DNS_MEMO_MAX_ANSWER   (8u * 1024)         /* larger answers are not kept there */
#define LIM_DNS_MEMO_BYTES        (32u * 1024 * 1024) /* all answers kept there together */
#define LIM_DNS_OOM_RESERVE       64u                 /* lookups answered "out of memory" at once when malloc fails */
#define LIM_DNS_SEEN_SLOTS        8192u               /* answers remembered for from_cache (power of 2) */

/* ---- SPF (checks/spf) ---- */
#define LIM_SPF_DNS_TERMS         10u                 /* RFC 7208 4.6.4 */
#define LIM_SPF_VOID_LOOKUPS      2u                  /* RFC 7208 4.6.4 */
#define LIM_SPF_MX_NAMES          10u                 /* RFC 7208 4.6.4: per mx lookup */
#define LIM_SPF_PTR_NAMES         10u                 /* RFC 7208 4.6.4: per ptr lookup */
#define LIM_SPF_RECORD            (16u * 1024)        /* longest record we parse */
#define LIM_SPF_EXPLANATION       1024u               /* expanded exp= text */
#define LIM_SPF_MACRO_OUT         1024u               /* one expanded domain-spec */

/* ---- DKIM (checks/dkim) ---- */
#define LIM_DKIM_MAX_SIGNATURES   8u                  /* dkim_max_signatures */
#define LIM_DKIM_MIN_RSA_BITS     1024u               /* RFC 8301 3.2 */
#define LIM_DKIM_CLOCK_DRIFT      300u                /* dkim_clock_drift: seconds a t= may lie in the future */
#define LIM_DKIM_BODY_HASHES      16u                 /* distinct (c=, l=) body hashes per message (DKIM + ARC) */
#define LIM_DKIM_KEY_DER          4096u               /* decoded p= bytes we accept (an 8192-bit RSA key is ~1 KB) */
#define LIM_DKIM_SIG_BYTES        1024u               /* decoded b= bytes (8192-bit RSA) */
#define LIM_DKIM_MAX_RSA_BITS     8192u               /* bigger keys cost too much to verify */
#define LIM_DKIM_H_NAMES          256u                /* names in one h= */
#define LIM_DKIM_KEY_CACHE        4096u               /* decoded keys kept (dkim_key_cache) */
#define LIM_DKIM_KEY_CACHE_TTL    3600u               /* longest a decoded key is kept, seconds */
#define LIM_DKIM_SIGN_RSA_BITS    2048u               /* RSA modulus of a new signing key (alignc keygen) */
#define LIM_DKIM_SIGN_FOLD        78u                 /* DKIM-Signature lines are folded before this column (RFC 5322 2.1.1) */
#define LIM_DKIM_SIGN_KEY_FILE    (64u * 1024)        /* largest private key file read */
#define LIM_DKIM_SIGN_FIELD       (16u * 1024)        /* longest DKIM-Signature field made */
#define LIM_DKIM_SIGN_KEYS        64u                 /* signing table: keys loaded */
#define LIM_DKIM_SIGN_NEXT_RECHECK 300u               /* seconds between lookups of a "next" selector's record */
#define LIM_DKIM_SIGN_NAME        64u                 /* longest field name put in h= (longer List-* fields are not signed) */

/* ---- DMARC (checks/dmarc) ---- */
#define LIM_DMARC_TREE_WALK       8u                  /* RFC 9989 tree walk: at most 8 queries */
#define LIM_DMARC_RECORD          (4u * 1024)
#define LIM_DMARC_AUTHOR_DOMAINS  4u                  /* distinct From domains evaluated (RFC 9989 11.5) */
#define LIM_DMARC_FROM_MAILBOXES  64u                 /* mailboxes parsed in the From field(s) */
#define LIM_DMARC_LOOKUPS         128u                /* DNS lookups in one DMARC evaluation */
#define LIM_MAIL_COMMENT_DEPTH    32u                 /* nested RFC 5322 comments */

/* ---- history store (store/, server/history.c) ---- */
#define LIM_HISTORY_QUEUE_MAX     1000000u            /* history_queue: the largest queue allowed */
#define LIM_HISTORY_BATCH         512u                /* records per transaction */
#define LIM_HISTORY_RETRY_MS      1000u               /* wait after a failed batch or open */
#define LIM_HISTORY_PURGE_S       300u                /* retention runs this often (and at start) */
#define LIM_HISTORY_PURGE_ROWS    20000u              /* rows one retention step deletes; the next step follows the next batch */
#define LIM_HISTORY_DROP_LOG_S    10u                 /* at most one "queue full" line this often */
#define LIM_FAILURE_HEADERS       (64u * 1024)        /* header bytes kept for one failure report */
#define LIM_FAILURE_BATCH         1000u               /* failure reports one run of alignd-report --failures considers */
#define LIM_FAILURE_LOOKBACK_S    3600u               /* how far back a first (or late) --failures run looks */
#define LIM_FAILURE_RATE_MAX      10000u              /* failure_report_rate at most */

/* ---- MTA clients (clients/) ---- */
#define LIM_AUTHSERV_ID           256u                /* longest authserv-id compared (RFC 8601 2.2) */
#define LIM_CLIENT_AR_IDS         32u                 /* distinct authserv-ids the milter tells apart per message */
#define LIM_CLIENT_MEMORY         (256u * 1024)       /* message bytes the milter holds in memory before spooling */
#define LIM_CLIENT_INTERNAL_NETS  64u                 /* networks the milter treats as internal (outbound) */

/* ---- trace and logging ---- */
#define LIM_TRACE_BYTES           (64u * 1024)        /* explain trace per message */
#define LIM_LOG_FIELD             256u                /* untrusted text in one log field */
#define LIM_LOG_LINE              2048u               /* one log line, all fields; longer is cut */

/* ---- DMARC reports ---- */
#define LIM_REPORT_FIELD          1024u               /* one text value in a report */
#define LIM_REPORT_REASONS        8u                  /* override reasons of one message */
#define LIM_REPORT_ADDR           320u                /* one rua= mailbox (RFC 5321 4.5.3.1: 64 + 1 + 255) */
#define LIM_REPORT_DESTS          8u                  /* rua= destinations used per domain */
#define LIM_REPORT_MAX_XML        (256u * 1024 * 1024) /* one report before gzip */
#define LIM_REPORT_SMTP_TIMEOUT_S 120u                /* one report submission */
#define LIM_REPORT_RETRY_FIRST_S  3600u               /* first wait after a report failed for now */
#define LIM_REPORT_RETRY_MAX_S    86400u              /* the longest wait between retries */
#define LIM_REPORT_RETRY_DAYS     64u                 /* past days a run retries at most */
#define LIM_SUMMARY_DOMAINS       100000u             /* author domains in alignd-report --summary */
#define LIM_SUMMARY_SOURCES       1000000u            /* (domain, client IP) pairs in --summary */
#define LIM_WHATIF_GROUPS         1000000u            /* author domains, and sources, in --what-if */
#define LIM_WHATIF_EXAMPLES       3u                  /* changed messages shown per group */
#define LIM_WHATIF_DAYS           3660u               /* days in the --what-if chart */
#define LIM_WHATIF_QUEUE          256u                /* stored messages between the reader and the replay threads */
#define LIM_WHATIF_WORKERS        8u                  /* replay threads at most (one per processor) */

#endif
