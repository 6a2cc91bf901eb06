"""Our verdict beside OONI's, per web_connectivity version: docs/ooni-agreement.md.

First the real field measurements of every version (``tests/data/ooni-real``, sources in
its README): per version how many, agreed, disagreed (each with its reason in
:data:`DISAGREEMENTS`) and not scored (:func:`probe.format.ooni.skip_reason`). Then the
50 SIMULATOR measurements of ooni/probe-cli's minipipeline
(``shared/data/ooni-samples/ooni-probe-cli/minipipeline-generated/<case>/measurement.json``),
scores each with :func:`probe.verdict.verdict` (which reads OONI measurements
through :mod:`probe.format.ooni`), and writes the table: OONI's
``blocking``/``accessible``/``x_blocking_flags``, what ooni/data's pipeline
expects (from the samples' README), our verdict, whether they agree
(:func:`probe.verdict.agreement.agrees`), and for every disagreement why.

Run: python bench/ooni_agreement.py [--samples DIR] [--write docs/ooni-agreement.md]
(without --write it prints the document). tests/test_ooni.py recomputes the
agreement and holds it at or above the committed level.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from probe.format.ooni import skip_reason
from probe.verdict import Verdict, verdict
from probe.verdict.agreement import OoniVerdict, agrees, ooni_verdict

ROOT: Final = Path(__file__).resolve().parent.parent
SAMPLES: Final = ROOT.parent / "shared" / "data" / "ooni-samples"
CASES_DIR: Final = "ooni-probe-cli/minipipeline-generated"
#: Real field measurements of every older version (tests/data/ooni-real/README.md).
REAL: Final = ROOT / "tests" / "data" / "ooni-real"
#: What each web_connectivity version records, hence what evidence it offers our rules.
VERSIONS: Final = (
    (
        "0.0.1",
        "Measurement Kit (ooniprobe mobile/desktop 2016-2019): system-resolver `queries` "
        "(A, CNAME), `tcp_connect` per address, `requests` (headers as a dict, values or bodies "
        "sometimes `{format: base64}`), the TH's `control` (dns addrs, with CNAME names among "
        "them; tcp_connect; http_request title/headers/status). No TLS handshake, no timings, no "
        "DNS control: a plain-HTTP answer that matches the TH is ok at 0.7 only; TLS interference "
        "shows only as a failed HTTPS request.",
    ),
    (
        "0.1.0",
        "Python ooniprobe 2.x: as 0.0.1, queries without `engine`, `response: null` when "
        "none came, Twisted failure names (`response_never_received`, `connection_refused_error`, "
        "mapped to df-007), a request retried (`retries`).",
    ),
    (
        "0.3.x",
        "Python ooniprobe 2.x: as 0.1.0; `requests` hold each hop of a redirect (the "
        "last first), `body: null` for an empty body.",
    ),
    (
        "0.4.x",
        "Go (probe-engine/probe-cli 3.x): adds `tls_handshakes` (some without `address` "
        "in probe-cli 3.14: left out or address unknown, the rest judged), `network_events`, "
        "t/t0 timings, `headers_list`, `body_is_truncated`, the TH's `tls_handshake` (0.4.2+) "
        "and `ip_info`; `x_status`.",
    ),
    (
        "0.5.x",
        "Go (probe-cli 3.17+): DNS over udp/DoH to public resolvers (DNS controls), "
        "`x_dns_duplicate_responses` (injection), transaction ids tying steps together, "
        "`x_blocking_flags` (OONI's finer verdict), TLS handshakes for http:// inputs too.",
    ),
)
TARGET: Final = 0.9

#: Why our verdict differs from OONI's, for every case where it does.
DISAGREEMENTS: Final = {
    "controlFailureWithSuccessfulHTTPWebsite": (
        "OONI says null/null because its test helper failed (`control_failure` "
        "connection_reset): it has no page to compare with. We say ok at confidence 0.7: the "
        "probe fetched the page (200) from 93.184.216.34, where a TLS handshake for "
        "www.example.org validated, and no blockpage fingerprint matches; the missing control "
        "lowers the confidence and is named in the evidence. A transparent port-80 proxy "
        "serving the real page would fool both. Neither is wrong: OONI is more cautious, we "
        "say more (its HTTPS twin is accessible for both)."
    ),
    "redirectWithBrokenLocationForHTTP": (
        "No censorship in this case: the simulated website itself answers 302 with "
        "`Location: http://` (no host). OONI reads any failure of the probe's fetch that its "
        "test helper did not see as http-failure, a false positive of the kind its issue "
        "tracker knows (a failure read as blocking). Our http.diff ignores a redirect without "
        "a host (a server bug, not another site) and no rule finds interference: inconclusive."
    ),
    "redirectWithBrokenLocationForHTTPS": (
        "As for HTTP, and over HTTPS it cannot be interference at all: the broken 302 came "
        "inside a TLS session validated for httpbin.com, which no on-path party can write "
        "into. OONI's http-failure is a false positive; ours is inconclusive (TLS works, the "
        "site's own answer is broken)."
    ),
}

DISAGREEMENTS.update(
    {
        "requests_none_0.1.0": (
            "OONI says dns, but the name is gone, not blocked. The system resolver answered "
            "NXDOMAIN for www.wikispaces.com (Wikispaces closed in 2018); the test helper resolved "
            "no address (its list holds only the name wikispaces.com) and its own fetch failed "
            "with dns_lookup_error: no address anywhere, so down."
        ),
        "web_connectivity_null2_0.4.1": (
            "OONI says null/null (it could not decide); we say down. The certificate of "
            "yooz.ir (for *.yooz.ir) had expired a year before (2021-07-08), the handshake "
            "ends in ssl_invalid_certificate at the address the test helper confirms, and the "
            "test helper's own fetch failed too: the site is broken from both vantage points."
        ),
        "id_archive_org_0.4.3": (
            "OONI says accessible (false/true); it missed the blockpage. http://archive.org "
            "answered with a 302 to http://lamanlabuh.aduankonten.id/, whose page is "
            "Indonesia's Trustpositif blockpage (OONI fingerprint ooni.id_lamanlabuh_kominfo); "
            "the status code and headers matched the test helper's page, so OONI read it as "
            "the site although the titles differ."
        ),
        "pk_icloud_private_relay_0.5": (
            "OONI says dns: its known false positive ooni/probe#2517. The ISP's resolver and "
            "8.8.4.4 answer mask.icloud.com with Akamai addresses (AS36183), the test helper "
            "with Apple's (AS714), and TLS for the name ends in eof_error at every address of "
            "both sets, from the probe and from the test helper: the answer cannot be told "
            "from a genuine one (a CDN's), so no DNS verdict; the site fails from both vantage "
            "points (iCloud Private Relay speaks QUIC, not TLS over TCP): down."
        ),
    }
)

#: What a reader should know about some agreeing cases.
NOTES: Final = {
    "cloudflareCAPTCHAWithHTTP": (
        "Both flag it, both arguably wrongly: the page is Cloudflare's browser check, which "
        "OONI's own fingerprint database lists as a known false positive "
        "(`cp.fp_x_cloudflare_check`, scope fp, never called a blockpage here); its title "
        "differs from the test helper's page, so http.diff at confidence 0.6."
    ),
    "dnsBlockingBOGON": (
        "OONI's DNS fingerprint `ooni.ir_5` names 10.10.34.35 as Iran's blockpage address; a "
        "special-purpose address is judged by the bogon rule anywhere (the name is only true "
        "in Iran)."
    ),
    "httpDiffWithConsistentDNS": (
        "The page contains `Access Denied`, OONI fingerprint `cp.f_gen_access_denied`, scope "
        "vbw (a vague word genuine error pages show too): not a blockpage by itself; the title "
        "differs from the test helper's page: http.diff."
    ),
    "httpDiffWithInconsistentDNS": (
        "Agrees through flag 16 (OONI: DNS + HTTP diff). The resolver's 130.192.182.17 "
        "completed a valid TLS handshake for www.example.com (at the test helper), which makes "
        "it genuine for our DNS rule (anchors: CDN answers); the plain-HTTP page differs."
    ),
    "tlsBlockingConnectionResetWithInconsistentDNS": (
        "Agrees through flag 4 (OONI: DNS + TLS). As above, the test helper validated TLS at "
        "130.192.182.17, so DNS is consistent for us; the reset is the finding."
    ),
    "redirectWithConsistentDNSAndThenConnectionRefusedForHTTP": (
        "Agrees through flag 2: OONI's `blocking` says http-failure for a TCP failure after a "
        "redirect, its flags say TCP/IP, as we do (on the redirect's domain)."
    ),
    "redirectWithConsistentDNSAndThenConnectionRefusedForHTTPS": "As for HTTP (flag 2).",
    "throttlingWithHTTP": (
        "OONI has no throttling verdict: a download that began and timed out is http-failure "
        "there, throttling (confidence 0.5) here."
    ),
    "throttlingWithHTTPS": "As for HTTP.",
    "dnsHijackingToProxyWithHTTPSURL": (
        "OONI's flags say DNS (33) but its verdict accessible, as ours: the proxy's address "
        "validates TLS for the name."
    ),
    "dnsHijackingToProxyWithHTTPURL": "As for HTTPS.",
}

HEADER: Final = """\
# Our verdicts on OONI's web_connectivity QA cases

Generated by `python bench/ooni_agreement.py --write docs/ooni-agreement.md`; do not edit
by hand. `tests/test_ooni.py` recomputes the agreement from the samples and fails if it
drops below the level committed here.

## What is compared

The 50 cases of ooni/probe-cli's `internal/minipipeline/testdata/webconnectivity/generated/`
(copied into `shared/data/ooni-samples/`, see its README): measurements written by the real
OONI probe (web_connectivity 0.5.28) inside probe-cli's network simulator, each with the
verdict OONI's QA asserts (`blocking`, `accessible`, `x_blocking_flags`). The column
*oonipipeline expects* is what ooni/data's analysis must derive (copied from the README).
Our verdict is `probe.verdict.verdict(measurement)`, which reads OONI measurements through
`probe/format/ooni.py` and applies the same rules as to ours; `probe/verdict/agreement.py` compares.

Before them, real field measurements of every version OONI published (0.0.1 to 0.5), copied
as data from ooni/backend's fastpath tests, ooni/explorer's fixtures and probe-cli's
ooni/probe#2517 test keys (`tests/data/ooni-real`, its README names each source): per
version how many were read, how many agree, every disagreement with its reason, and those
not scored (`test_keys: null`).

## What "agree" means

* OONI `blocking` is `"dns"`, `"tcp_ip"`, `"http-failure"` or `"http-diff"`: we say
  `blocked` with a method that names the same step: `dns` for dns; `tcp_ip` for tcp_ip;
  `tls`, `http` or `throttling` for http-failure (OONI lumps TLS and HTTP failures, timeouts
  of a download included, into it); `http` for http-diff. OONI 0.5 also writes
  `x_blocking_flags`, its finer verdict (1 DNS, 2 TCP/IP, 4 TLS, 8 HTTP failure, 16 HTTP
  diff): a method named by a set bit agrees too (OONI's `blocking` keeps old names, e.g.
  http-failure for a TCP failure after a redirect, where its flags say 2).
* `blocking` false and `accessible` true: we say `ok`.
* false/false (OONI's "expected failure": the site is down or broken): we say `down`.
* null/null (OONI cannot tell): we say `inconclusive`.
* Anything else disagrees. Confidence is not compared.

## How OONI's data maps onto our observations (and what it costs)

* Probe side: `queries` from getaddrinfo are the system resolver; the probe's queries to
  public resolvers (udp, DoH) are DNS controls like our `resolver_control` ones;
  `tcp_connect`, `tls_handshakes`, `requests` are the target steps (role by name or
  address; steps of another domain, reached by a redirect, are judged as their own hop).
* The test helper (`test_keys.control`): its DNS answer is a trusted DNS control (it comes
  over HTTPS from another network); its TCP connects, TLS handshakes and HTTP fetch are the
  same steps from elsewhere, role `remote`. OONI has no control SNI on the same address and
  no control site, so a TLS reset or stall is reported as `tls.reset` / `tls.stall` at
  confidence 0.7 ("this path interferes"), never as SNI filtering (our own measurements
  prove that at 0.85-0.95). The probe's successful exchange with the test helper is the one
  sign that its network works; a failed control adds nothing (a blocked test helper is not
  an outage), so without it nothing is called blocked.
* Redirects: the input's domain is judged first, then each domain a redirect led to; the
  verdict is the first hop that is not ok (the test helper follows redirects, so its fetch
  is the remote view of every hop).
* When the test helper cannot fetch the site either, a TCP, TLS or HTTP failure is the
  site's: `down`.
* No test-helper result (`control: {}`, or `control_failure`): every TLS handshake for the
  name reset (stalled) after its TCP connect succeeded is `tls.reset` (`tls.stall`) at
  confidence 0.5 (0.4; +0.05 when OONI's `x_blocking_flags` say TLS), and the explanation
  says it rests on the measurement alone (the server refusing the name is not ruled out).
  `probe.verdict.ooni_aggregate` then weighs such lines by the other names of the same run.
* DNS: an answer is genuine when it completes a valid TLS handshake for the name (here or
  at the test helper, which OONI 0.4.2+ asks to try the probe's addresses), when it names
  the control's canonical name, or when TLS for the name ends the same way at its addresses
  and at the control's, seen from the test helper (ooni/probe#2517): a CDN answer in
  another ASN is not tampering.

## Data and licence

OONI's blockpage fingerprints ship in the package as `probe/verdict/ooni_fingerprints_dns.json`
and `probe/verdict/ooni_fingerprints_http.json`, byte-for-byte copies of ooni/backend's
`fastpath/fastpath/tests/data/fingerprints_{dns,http}.json` at commit
`32d8349dc5440e75264c84c0ffe97495c7488e84` (git blobs `da32258ee731`, `576022865ab3`),
under ooni/backend's licence (BSD 3-clause), reproduced here as it requires:

> Copyright (c) 2012-2013 Jacob Appelbaum, Arturo Filastò, Aaron Gibson,
> Isis Lovecruft, and The Tor Project, Inc.
> All rights reserved.
>
> Redistribution and use in source and binary forms, with or without
> modification, are permitted provided that the following conditions are met:
>
> 1. Redistributions of source code must retain the above copyright notice, this
>    list of conditions and the following disclaimer.
> 2. Redistributions in binary form must reproduce the above copyright notice,
>    this list of conditions and the following disclaimer in the documentation
>    and/or other materials provided with the distribution.
>
> THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS" AND
> ANY EXPRESS OR IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE IMPLIED
> WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A PARTICULAR PURPOSE ARE
> DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT OWNER OR CONTRIBUTORS BE LIABLE FOR
> ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR CONSEQUENTIAL DAMAGES
> (INCLUDING, BUT NOT LIMITED TO, PROCUREMENT OF SUBSTITUTE GOODS OR SERVICES;
> LOSS OF USE, DATA, OR PROFITS; OR BUSINESS INTERRUPTION) HOWEVER CAUSED AND
> ON ANY THEORY OF LIABILITY, WHETHER IN CONTRACT, STRICT LIABILITY, OR TORT
> (INCLUDING NEGLIGENCE OR OTHERWISE) ARISING IN ANY WAY OUT OF THE USE OF THIS
> SOFTWARE, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGE.
>
> The views and conclusions contained in the software and documentation are those
> of the authors and should not be interpreted as representing official policies,
> either expressed or implied, of the FreeBSD Project.

Fingerprints of scope `fp` (known false positives) and `vbw` (vague blocking words) never
make a blockpage verdict; special-purpose addresses in the DNS ones are left to the bogon rule.
"""


@dataclass(frozen=True, slots=True)
class Row:
    case: str
    input: str
    ooni: OoniVerdict
    expects: str
    ours: Verdict
    agree: bool


def expectations(samples: Path) -> dict[str, str]:
    """case -> the README's *oonipipeline expects* column."""
    out: dict[str, str] = {}
    readme = (samples / "README.md").read_text("utf-8")
    for line in readme.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and (samples / CASES_DIR / cells[0]).is_dir():
            out[cells[0]] = cells[4]
    return out


def rows(samples: Path) -> list[Row]:
    expects = expectations(samples)
    out = []
    for case_dir in sorted((samples / CASES_DIR).iterdir()):
        m = json.loads((case_dir / "measurement.json").read_text("utf-8"))
        ours = verdict(m)
        theirs = ooni_verdict(m)
        out.append(
            Row(
                case_dir.name,
                str(m.get("input")),
                theirs,
                expects.get(case_dir.name, ""),
                ours,
                agrees(theirs, ours),
            )
        )
    return out


def real_rows(folder: Path = REAL) -> list[tuple[str, Row | None, str]]:
    """(version, row, "") for each real measurement of tests/data/ooni-real, or (version, None,
    why it is not scored)."""
    out: list[tuple[str, Row | None, str]] = []
    for path in sorted(folder.glob("*.json")):
        m = json.loads(path.read_text("utf-8"))
        version = str(m.get("test_version"))
        reason = skip_reason(m)
        if reason is not None:
            out.append((version, None, f"{path.stem}: {reason}"))
            continue
        ours, theirs = verdict(m), ooni_verdict(m)
        row = Row(path.stem, str(m.get("input")), theirs, "", ours, agrees(theirs, ours))
        out.append((version, row, ""))
    return out


def _family(version: str) -> str:
    return version if version.startswith(("0.0.", "0.1.")) else version.rsplit(".", 1)[0] + ".x"


def _why(rows: list[Row]) -> str:
    return "; ".join(f"{r.case}: {_short(DISAGREEMENTS[r.case])}" for r in rows if not r.agree)


def _short(reason: str) -> str:
    return reason.split(". ", 1)[0].rstrip(".")


def per_version(table: list[Row], real: list[tuple[str, Row | None, str]]) -> list[str]:
    """The agreement table per web_connectivity version, with what each version offers."""
    scored: dict[str, list[Row]] = {}
    skipped: dict[str, list[str]] = {}
    for version, row, reason in real:
        if row is None:
            skipped.setdefault(_family(version), []).append(reason)
        else:
            scored.setdefault(_family(version), []).append(row)
    lines = [
        "## Agreement per web_connectivity version\n",
        "Real field measurements (`tests/data/ooni-real`, sources in its README) per version, "
        "then the 50 simulator QA cases of web_connectivity 0.5.28 (below). *Disagreed* gives "
        "each case and the first sentence of why (the whole reason is in the tables below).\n",
        "| version | measurements | agreed | disagreed (why) | not scored | what it offers |",
        "|---|---|---|---|---|---|",
    ]
    for version, offers in VERSIONS:
        rows_ = scored.get(version, [])
        agreed = sum(r.agree for r in rows_)
        off = skipped.get(version, [])
        lines.append(
            f"| {version} | {len(rows_) + len(off)} | {agreed} | {len(rows_) - agreed}"
            f"{f' ({_why(rows_)})' if agreed < len(rows_) else ''} | {len(off)}"
            f"{f' ({chr(59).join(off)})' if off else ''} | {offers} |"
        )
    agreed = sum(r.agree for r in table)
    lines.append(
        f"| 0.5.28 (simulator QA) | {len(table)} | {agreed} | {len(table) - agreed}"
        f"{f' ({_why(table)})' if agreed < len(table) else ''} | 0 | as 0.5.x |"
    )
    lines += ["", "| real measurement | version | input | OONI blocking / accessible | ours "
              "| agree | why / note |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for version, r, _ in real:
        if r is None:
            continue
        v = r.ours
        ours = v.status + (f" {v.detail}" if v.detail else "") + f" ({v.confidence:.2f})"
        theirs = f"{_js(r.ooni.blocking)} / {_js(r.ooni.accessible)}"
        agree = "yes" if r.agree else "**no**"
        note = DISAGREEMENTS.get(r.case, "") if not r.agree else NOTES.get(r.case, "")
        lines.append(
            f"| {r.case} | {version} | `{r.input}` | {theirs} | {ours} | {agree} | {note} |"
        )
    lines += ["", *(f"* **{r.case}**: {r.ours.explanation}" for _, r, _ in real if r), ""]
    return lines


def document(table: list[Row]) -> str:
    agreed = sum(r.agree for r in table)
    share = agreed / len(table)
    lines = [
        HEADER,
        *per_version(table, real_rows()),
        "## Result\n",
        f"Agreement: {agreed}/{len(table)} ({share:.0%}; target {TARGET:.0%}).\n",
        "| case | input | OONI blocking / accessible / flags | oonipipeline expects | ours "
        "| agree | why / note |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in table:
        o = r.ooni
        theirs = f"{_js(o.blocking)} / {_js(o.accessible)} / {_js(o.flags)}"
        v = r.ours
        ours = v.status + (f" {v.detail}" if v.detail else "") + f" ({v.confidence:.2f})"
        note = DISAGREEMENTS.get(r.case, "") if not r.agree else NOTES.get(r.case, "")
        lines.append(
            f"| {r.case} | `{r.input}` | {theirs} | {r.expects} | {ours} | "
            f"{'yes' if r.agree else '**no**'} | {note} |"
        )
    lines.append("\n## Our explanations\n")
    lines += [f"* **{r.case}**: {r.ours.explanation}" for r in table]
    return "\n".join(lines) + "\n"


def _js(value: object) -> str:
    return json.dumps(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=Path, default=SAMPLES)
    parser.add_argument("--write", type=Path, help="write the document here")
    args = parser.parse_args(argv)
    if not (args.samples / CASES_DIR).is_dir():
        print(f"no OONI samples at {args.samples}", file=sys.stderr)
        return 2
    table = rows(args.samples)
    real = [r for _, r, _ in real_rows() if r is not None]
    unexplained = [r.case for r in table + real if not r.agree and r.case not in DISAGREEMENTS]
    text = document(table)
    if args.write:
        args.write.write_text(text, "utf-8")
    else:
        sys.stdout.write(text)
    if unexplained:
        print(f"disagreements without a reason: {', '.join(unexplained)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
