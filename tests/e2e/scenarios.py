"""The scenarios of the end-to-end tests, shared by the MTA front ends:
who connects, what it sends, and the world set-up (DNS world + daemon)
that every test class starts in setUpClass and stops in tearDownClass."""
import os
import unittest

import harness
import mta
from dnsworld import World

BUILD = os.environ.get("ALIGND_BUILD_ROOT", "")
WORLD_CACHE = os.path.join(BUILD, "tests", "e2e", "world-cache") if BUILD else None

# DNS deadline of the daemon in these tests: short, so the timeout
# scenario takes seconds; swaks and Postfix wait far longer (mta.SMTP_TIMEOUT)
DNS_TIMEOUT = "2s"

INBOX = "inbox@test.example"


class Scenario:
    def __init__(self, name, client_ip, helo, mail_from, msg):
        self.name = name
        self.client_ip = client_ip
        self.helo = helo
        self.mail_from = mail_from
        self.msg = msg


def spoofed():
    """1: From: of p=reject example.com, sent from an unrelated address."""
    msg = mta.make_message("The CEO <ceo@example.com>", INBOX, "urgent wire transfer")
    return Scenario("spoofed", "203.0.113.99", "evil.example.net",
                    "attacker@example.net", msg)


FORGED_AR = "Authentication-Results: %s; dkim=pass header.d=example.com; dmarc=pass" \
    % mta.AUTHSERV_ID
OTHER_AR = "Authentication-Results: other.example; spf=pass smtp.mailfrom=example.com"


def aligned(world_dir, subject="quarterly report"):
    """2: aligned and DKIM-signed by example.com, from its SPF-allowed
    address; carries a forged A-R claiming our authserv-id, and one of
    another host that must stay."""
    msg = mta.make_message("Alice <alice@example.com>", INBOX, subject,
                           body="Figures attached.\r\n.leading dot line\r\n",
                           extra_headers=[FORGED_AR, OTHER_AR])
    # simple/simple: any change to the bytes on the way would break it
    msg = mta.dkim_sign(msg, world_dir, "example.com", "s2048", canon=b"simple")
    return Scenario("aligned", "192.0.2.25", "mail.example.com", "alice@example.com", msg)


# forged results that claim our authserv-id in every way RFC 8601 2.2 and
# RFC 5322 allow (and one a lenient reader might take for ours); each is
# marked "forged-N", and all come after 64 honest ones of another host
FORGED_VARIANTS = [
    "Authentication-Results: %s; dmarc=pass (forged-1)" % mta.AUTHSERV_ID,
    'Authentication-Results: "%s"; dmarc=pass (forged-2)' % mta.AUTHSERV_ID,
    "Authentication-Results: (trust me) %s; dmarc=pass (forged-3)" % mta.AUTHSERV_ID.upper(),
    'Authentication-Results:\r\n\t(folded)\r\n\t"%s"\r\n\t; dmarc=pass (forged-4)' % mta.AUTHSERV_ID,
    "Authentication-Results: %s.; dmarc=pass (forged-5)" % mta.AUTHSERV_ID,
    "Authentication-Results: (x\\) %s; dmarc=pass (forged-6)" % mta.AUTHSERV_ID,
    'Authentication-Results: "%s\\%s"; dmarc=pass (forged-7)' % (mta.AUTHSERV_ID[:4], mta.AUTHSERV_ID[4:]),
    "authentication-results: %s 1; dmarc=pass (forged-8)" % mta.AUTHSERV_ID,
]
N_HONEST = 66


def many_forged(world_dir, subject="many results"):
    """2b: aligned and signed like 2, with 64 results of another host, then
    the forged variants, then two more honest ones."""
    honest = ["Authentication-Results: other.example; spf=pass smtp.mailfrom=example.com"
              " (kept-%d)" % i for i in range(N_HONEST)]
    extra = honest[:64] + FORGED_VARIANTS + honest[64:]
    msg = mta.make_message("Alice <alice@example.com>", INBOX, subject,
                           body="Figures attached.\r\n", extra_headers=extra)
    msg = mta.dkim_sign(msg, world_dir, "example.com", "s2048", canon=b"simple")
    return Scenario("many-forged", "192.0.2.25", "mail.example.com", "alice@example.com", msg)


def check_many_forged(case, text):
    """The delivered message (text) of many_forged(): every forged result
    gone, every honest one kept, ours once."""
    case.assertNotIn("forged-", text)
    for i in range(N_HONEST):
        case.assertIn("(kept-%d)" % i, text)
    case.assertEqual(text.count("Authentication-Results: %s;" % mta.AUTHSERV_ID), 1)


def oversized(world_dir, size=20000):
    """An aligned message larger than the clients' --max-size in the tests,
    carrying a forged result of ours and one of another host."""
    body = ("x" * 70 + "\r\n") * (size // 72)
    msg = mta.make_message("Alice <alice@example.com>", INBOX, "oversized", body=body,
                           extra_headers=[FORGED_AR, OTHER_AR])
    return Scenario("oversized", "192.0.2.25", "mail.example.com", "alice@example.com", msg)


def quarantined():
    """3: example.org (p=quarantine, strict alignment), SPF softfail, no
    DKIM: DMARC fails, the policy says quarantine."""
    msg = mta.make_message("Bob <bob@example.org>", INBOX, "newsletter")
    return Scenario("quarantine", "192.0.2.77", "relay.example.net", "bob@example.org", msg)


def dns_timeout():
    """4: every query for silent.example goes unanswered."""
    msg = mta.make_message("<user@silent.example>", INBOX, "silence")
    return Scenario("dns-timeout", "198.51.100.9", "mail.silent.example",
                    "user@silent.example", msg)


def restart_message():
    """5: an ordinary message that arrives while the daemon is down."""
    msg = mta.make_message("<carol@unsigned.example>", INBOX, "while you were out")
    return Scenario("restart", "203.0.113.9", "mail.unsigned.example",
                    "carol@unsigned.example", msg)


def ar_headers(msg):
    return msg.get_all("Authentication-Results") or []


def our_ar(msg):
    return [v for v in ar_headers(msg) if v.strip().lower().startswith(mta.AUTHSERV_ID)]


class WorldCase(unittest.TestCase):
    """Starts the DNS world and alignd once for the class."""

    daemon_args = ()

    @classmethod
    def more_daemon_args(cls, daemon_dir):
        return ()

    @classmethod
    def setUpClass(cls):
        why = mta.missing_tools()
        if why:
            raise unittest.SkipTest(why)
        cls.world = World(cache_dir=WORLD_CACHE)
        cls.world.start()
        try:
            cls.daemon = harness.Daemon("--set", "socket_mode=0666",
                                        "--set", "dns_timeout=" + DNS_TIMEOUT,
                                        *cls.daemon_args, world=cls.world)
            cls.daemon.args += list(cls.more_daemon_args(cls.daemon.dir))
            # Postfix's unprivileged processes reach the socket through it
            mta.world_dir_readable(cls.daemon.dir)
            cls.daemon.start()
        except BaseException:
            cls.world.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.daemon.cleanup()
        finally:
            cls.world.stop()
