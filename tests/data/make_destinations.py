#!/usr/bin/env python3
"""Writes destinations.txt, Ferrygate's destination attack corpus.

Run it after changing a class; the committed .txt is what the tests read.
"""
hosts = ["evil.example", "evil.example:443", "127.0.0.1", "[::1]", "evil.example.", "xn--evl-8na.example"]
out = []


def cls(title, why, items):
    out.append("")
    out.append(f"# class: {title}")
    out.append(f"# why: {why}")
    for i in items:
        out.append(f"refuse {i}")


INVISIBLE = " \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff\u200b\u200e\u200f"


def esc(s):
    r = ""
    for ch in s:
        o = ord(ch)
        if ch == "\\":
            r += "\\\\"
        elif o < 0x20 or o == 0x7F or (0x80 <= o <= 0x9F):
            r += "\\x%02x" % o
        elif ch in INVISIBLE:
            r += "\\u{%x}" % o
        else:
            r += ch
    return r


schemes = ["https://", "http://", "HTTPS://", "hTTp://", "ftp://", "ws://", "wss://", "file://"]
cls("absolute URLs", "a full URL sends the browser to another site",
    [esc(s + h + "/my-portal") for s in schemes for h in hosts])
cls("scheme-only and pseudo-schemes", "javascript:/data:/vbscript: run code or render attacker content; a bare word is not a path",
    [esc(x) for x in ["javascript:alert(1)", "JavaScript:alert(1)", "javascript://%0aalert(1)", "java\tscript:alert(1)",
                      "data:text/html,<script>alert(1)</script>", "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
                      "vbscript:msgbox(1)", "https:evil.example", "http:/evil.example", "https:/\\evil.example", "mailto:a@evil.example",
                      "my-portal", "my-portal/x", "evil.example/my-portal", "", ".", "..", "./my-portal", "../my-portal",
                      "?next=/my-portal", "#/my-portal", "JAVASCRIPT:alert(1)", " javascript:alert(1)", "\x01javascript:alert(1)",
                      "javascript&colon;alert(1)", "data:,x", "blob:https://evil.example/x", "about:blank", "chrome://settings",
                      "view-source:https://evil.example", "jar:https://evil.example!/"]])
cls("scheme-relative", "//host is an absolute URL without a scheme",
    [esc(p + h + s) for p in ["//", "///", "////", "/\\/", "\\//"] for h in hosts for s in ["", "/my-portal"]])
cls("backslashes", "browsers treat \\ as / in special URLs: /\\evil becomes //evil",
    [esc(x) for x in ["/\\evil.example", "\\\\evil.example", "\\/evil.example", "/my-portal\\..\\..\\evil", "/my-portal/\\evil.example",
                      "/my-portal\\x", "\\my-portal", "/\\/evil.example/", "/my-portal/..\\admin", "/my-portal/%2e%2e\\admin"]])
enc_slash = ["%2f", "%2F", "%5c", "%5C", "%252f", "%255c", "%25252f", "%2f%2f", "%5c%5c", "%2F%2Fevil.example", "%c0%af", "%e0%80%af"]
cls("encoded slashes and backslashes", "decoded by the portal or a proxy they become separators",
    [esc(f"/my-portal/{e}evil") for e in enc_slash] + [esc(f"/{e}evil.example") for e in enc_slash[:8]]
    + [esc(f"{e}{e}evil.example") for e in ["%2f", "%5c"]])
ctrl = ["\t", "\n", "\r", "\x00", "\x0b", "\x0c", "\x1b", "\x7f", "\x85", "\u00a0", "\u2028", "\u2029", "\u200b", "\ufeff", "\u3000", " "]
cls("control characters and whitespace", "browsers strip tab/CR/LF inside URLs (/<tab>/evil becomes //evil); others split headers",
    [esc(f"/{c}/evil.example") for c in ctrl] + [esc(f"/my-portal/{c}x") for c in ctrl]
    + [esc(f"{c}//evil.example") for c in ["\t", " ", "\n", "\r", "\x00"]] + [esc(f"/my-portal{c}") for c in ["\t", "\n", " "]])
cls("encoded control characters", "decoded later they have the same effect as raw ones",
    [esc(f"/my-portal/{e}x") for e in ["%09", "%0a", "%0A", "%0d", "%0D", "%00", "%1b", "%7f", "%0d%0aSet-Cookie:x=1", "%250a"]]
    + [esc(f"/{e}/evil.example") for e in ["%09", "%0a", "%0d", "%00"]]
    + [esc(f"/my-portal/x?{e}") for e in ["%0d%0aLocation:%20https://evil.example", "a=%00", "a=%0a"]])
cls("dot segments climbing out", "/my-portal/../admin resolves outside the allowed prefix",
    [esc(x) for x in ["/my-portal/../admin", "/my-portal/../../admin", "/my-portal/./../admin", "/my-portal/x/../../admin",
                      "/my-portal/%2e%2e/admin", "/my-portal/%2E%2E/admin", "/my-portal/.%2e/admin", "/my-portal/%2e./admin",
                      "/my-portal/%252e%252e/admin", "/my-portal/..", "/my-portal/../", "/../my-portal", "/./../my-portal",
                      "/my-portal/..;/admin", "/my-portal/.;/../admin", "/my-portal;/../admin", "/my-portal/x/..%2fadmin",
                      "/my-portal/..%5cadmin", "/my-portal/%2e", "/my-portal/..%00/admin"]])
cls("path parameters", "Java servers resolve ..; as .. and drop ;params after matching",
    [esc(x) for x in ["/my-portal;x", "/my-portal/x;jsessionid=abc", "/my-portal/%3b/x", "/my-portal/%3B", "/my-portal;/x"]])
cls("prefix confusion", "a prefix must match whole segments: /my-portalx is not /my-portal",
    [esc(x) for x in ["/my-portalx", "/my-portal.evil.example", "/my-portal-admin", "/my-portal%20", "/my-portal%2e", "/My-Portal",
                      "/MY-PORTAL/x", "/my-porta", "/my-port", "/admin/my-portal", "/x/my-portal", "/", "/my%2dportal", "/%6dy-portal",
                      "/my-portal@evil.example", "/my-portal:8080", "/my-portal..", "/my-portal~"]])
cls("userinfo and host tricks", "text that a lax parser reads as user@host",
    [esc(x) for x in ["/@evil.example", "//@evil.example", "//user@evil.example", "//user:pass@evil.example/my-portal",
                      "/my-portal@evil.example/", "https://my-portal@evil.example", "//evil.example@my-portal",
                      "http://evil.example\\@my-portal", "//evil.example%40my-portal", "/%40evil.example", "//evil.example%2f%40my-portal",
                      "//%65vil.example"]])
cls("fragments", "a fragment is never needed and confuses code that appends parameters",
    [esc(x) for x in ["/my-portal#//evil.example", "/my-portal#x", "/#/my-portal", "/my-portal/x?y=1#z"]])
cls("unicode look-alike separators outside the prefix", "fullwidth and division slashes normalise to / in some stacks",
    [esc(x) for x in ["／／evil.example", "／evil.example", "\u2215\u2215evil.example", "\u2044\u2044evil.example", "/\uff0fevil.example",
                      "\uff3c\uff3cevil.example", "。/evil.example", "/\u2025/admin"]])
cls("malformed escapes", "a broken %-escape is decoded differently by different parsers",
    [esc(f"/my-portal/{e}") for e in ["%", "%2", "%zz", "%g0", "%%2f", "%-1", "%2%66", "%u002f"]])
cls("over-long", "longer than 2 KiB: refuse rather than spend time",
    ["/my-portal/" + "a" * 2100, "/my-portal/?q=" + "b" * 2100, "/my-portal/" + "%20" * 700])

legit = ["/my-portal", "/my-portal/", "/my-portal/quotations", "/my-portal/quotations/new?origin=NLRTM&product=fcl",
         "/my-portal/quotations/new?origin=NLRTM&destination_port=USNYC&cargo_type=general&product=fcl",
         "/my-portal/shipments/SH-2026-0042", "/my-portal/a%20b", "/my-portal/docs/Bill%20of%20Lading.pdf", "/my-portal/café",
         "/my-portal/東京", "/my-portal/straße/ü", "/my-portal?tab=open&sort=-date", "/my-portal/x?next=%2Fmy-portal%2Fy",
         "/my-portal/x?q=a+b", "/my-portal/x?redirect=https%3A%2F%2Fnot-followed.example", "/my-portal/./x", "/my-portal/x/../y",
         "/my-portal/x/./y/", "/my-portal/~user", "/my-portal/x-y_z.html", "/my-portal/x?discount=100%25", "/my-portal/x?email=a%40b.example"]
# Not here on purpose: a literal "%" in the PATH ("/my-portal/100%25") is refused,
# because "%25" is how double-encoding attacks ("%252f") start.
out.append("")
out.append("# legitimate destinations: they must survive (query strings, encoded spaces, unicode paths)")
for dest in legit:
    out.append(f"allow {esc(dest)}")
HEADER = """# Destination attack corpus for Ferrygate's destination validation (written by
# tests/data/make_destinations.py). One entry per line: `refuse <value>` must be
# refused for the allowed prefix /my-portal; `allow <value>` must be accepted.
# Escapes: \\\\ is a backslash, \\xHH a byte-sized character, \\u{H..} any
# character (control characters and invisible whitespace, so the file stays
# plain text). The classes follow the open-redirect advisories of auth proxies
# (oauth2-proxy, Authelia, Oathkeeper, Pomerium)."""
with open("destinations.txt", "w") as f:
    f.write(HEADER + "\n" + "\n".join(out) + "\n")
print("refuse:", sum(1 for line in out if line.startswith("refuse ")), "allow:", len(legit))
