#!/usr/bin/python3
"""The report files as other tools read them: xmllint validates the XML
against the RFC 9990 schema, Python's email package parses the mail, and
gzip opens its attachment. usage: test_mime.py TEST_REPORT SCHEMA"""
import email
import email.policy
import gzip
import os
import subprocess
import sys
import tempfile

test_report, schema = sys.argv[1], sys.argv[2]
with tempfile.TemporaryDirectory() as d:
    subprocess.run([test_report, schema, "--write", d], check=True)
    xml_path = os.path.join(d, "report.xml")
    r = subprocess.run(["xmllint", "--noout", "--schema", schema, xml_path],
                       capture_output=True, text=True)
    print(r.stderr.strip())
    assert r.returncode == 0, "xmllint rejects the report"
    with open(os.path.join(d, "report.eml"), "rb") as f:
        raw = f.read()
    assert b"\n" not in raw.replace(b"\r\n", b""), "a bare LF in the mail"
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/mixed"
    subject = str(msg["Subject"])
    assert subject.startswith("Report Domain: example.com Submitter: mx.example.net Report-ID: <"), subject
    assert msg["Auto-Submitted"] == "auto-generated"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "application/gzip"], parts
    name = parts[1].get_filename()
    gz_files = [f for f in os.listdir(d) if f.endswith(".xml.gz")]
    assert gz_files == [name], (gz_files, name)
    body = parts[1].get_content()
    with open(os.path.join(d, name), "rb") as f:
        assert body == f.read(), "attachment differs from the gzip file"
    with open(xml_path, "rb") as f:
        assert gzip.decompress(body) == f.read(), "attachment does not gunzip to the report"
    report_id = subject.split("<", 1)[1].split("@", 1)[0]
    assert name.endswith("!%s.xml.gz" % report_id), name
    with open(os.path.join(d, "failure.eml"), "rb") as f:
        raw = f.read()
    assert b"\n" not in raw.replace(b"\r\n", b""), "a bare LF in the failure report"
    fr = email.message_from_bytes(raw, policy=email.policy.default)
    assert fr.get_content_type() == "multipart/report", fr.get_content_type()
    assert fr.get_param("report-type") == "feedback-report"
    parts = list(fr.iter_parts())
    assert [p.get_content_type() for p in parts] == \
        ["text/plain", "message/feedback-report", "text/rfc822-headers"], parts
    # RFC 5965 3.1: the report part is a header block of its own
    fb = email.message_from_bytes(parts[1].as_bytes().split(b"\n\n", 1)[1])
    assert fb["Feedback-Type"] == "auth-failure" and fb["Auth-Failure"] == "dmarc", fb.items()
    assert fb["Version"] == "1" and fb["Delivery-Result"] == "reject", fb.items()
    assert fb["Reported-Domain"] == "example.com" and fb["Source-IP"] == "203.0.113.9"
    assert fb["Original-Rcpt-To"] == "<redacted@example.net>"
    assert fr["Bcc"] is None, "a line break in a value made a field"
    orig = email.message_from_bytes(parts[2].as_bytes().split(b"\n\n", 1)[1])
    assert orig["From"] == "CEO <ceo@example.com>" and orig["To"] == "(redacted)", orig.items()
print("report files: xmllint, email and gzip agree")
