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
print("report files: xmllint, email and gzip agree")
