"""The cost of `GET /v2/_catalog` does not grow with the registry (Berth issue 17).

One berth with 2,000 repositories (`bulk/0000` .. `bulk/1999`) and two more: `open/app` (its
repository policy lets the user `friend` describe it) and `zeta/app`. The catalog lists only
what the caller may describe (ecr:DescribeRepositories), and Berth:

- reads and authorizes only the repositories a caller could possibly see: those its identity
  policies could allow (by name prefix) and those with a repository policy; so a caller whose
  policies allow nothing is answered from the repositories with a policy alone, in one page;
- authorizes at most 1,000 repositories per request (CATALOG_EXAMINE_MAX): when that budget runs
  out first, the page is partial (possibly empty) and its `Link` continues the walk. The cursor
  in that `Link` never names a repository the caller cannot see.

Both bounds are observable through the pages: their number and their contents are exact.
"""

import json
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from ecrlib import ACCOUNT_ID, REGION, create_iam_user, make_client, root_token, start_berth, stop_berth

BULK = [f"bulk/{i:04d}" for i in range(2000)]
EXAMINE_MAX = 1000  # berth_registry::CATALOG_EXAMINE_MAX
LOGIN = {"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"}
DESCRIBE = "ecr:DescribeRepositories"


def arn(name):
    return f"arn:aws:ecr:{REGION}:{ACCOUNT_ID}:repository/{name}"


def doc(*statements):
    return {"Version": "2012-10-17", "Statement": list(statements)}


class World:
    pass


@pytest.fixture(scope="module")
def w():
    srv = start_berth()
    try:
        x = World()
        x.srv = srv
        ecr = make_client(srv)
        with ThreadPoolExecutor(max_workers=4) as pool:
            created = list(pool.map(lambda n: ecr.create_repository(repositoryName=n), BULK))
        assert len(created) == len(BULK)
        for n in ["open/app", "zeta/app"]:
            ecr.create_repository(repositoryName=n)
        x.users = {
            "nothing": create_iam_user(srv, "nothing", inline={"login": doc(LOGIN)}),
            "friend": create_iam_user(srv, "friend", inline={"login": doc(LOGIN)}),
            "zeta": create_iam_user(srv, "zeta", inline={"p": doc(
                LOGIN, {"Effect": "Allow", "Action": DESCRIBE, "Resource": arn("zeta/*")})}),
            "denied": create_iam_user(srv, "denied", inline={"p": doc(
                LOGIN,
                {"Effect": "Allow", "Action": DESCRIBE, "Resource": "*"},
                {"Effect": "Deny", "Action": DESCRIBE, "Resource": arn("bulk/*")})}),
        }
        ecr.set_repository_policy(repositoryName="open/app", policyText=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Sid": "friend", "Effect": "Allow", "Action": DESCRIBE,
                           "Principal": {"AWS": x.users["friend"].arn}}],
        }))
        x.tokens = {k: u.token() for k, u in x.users.items()}
        x.tokens["root"] = root_token(srv)
        yield x
    finally:
        stop_berth(srv)


def get(w, path, token):
    return requests.get(f"{w.srv.url}{path}", headers={"Authorization": "Basic " + token}, timeout=120)


def pages(w, who, path="/v2/_catalog", max_pages=10):
    """Every page of the catalog for `who`, following `Link` (bounded): [(repositories, link)]."""
    out = []
    for _ in range(max_pages):
        r = get(w, path, w.tokens[who])
        assert r.status_code == 200, (r.status_code, r.text)
        assert set(r.json()) == {"repositories"}, r.text
        link = r.headers.get("Link")
        out.append((r.json()["repositories"], link))
        if link is None:
            return out
        assert link.startswith("</v2/_catalog?") and link.endswith('>; rel="next"'), link
        path = link[1:link.index(">")]
    raise AssertionError(f"more than {max_pages} catalog pages for {who}: {out[-1]}")


def test_caller_allowed_nothing_gets_an_empty_catalog_in_one_page(w):
    # Nothing in `nothing`'s policies allows DescribeRepositories, and the only repository policy
    # names `friend`: the answer comes from open/app alone, in one page, without a Link. (Walking
    # the 2,002 repositories would need three budgets' worth of requests, hence Links.)
    assert pages(w, "nothing") == [([], None)]
    assert pages(w, "nothing", "/v2/_catalog?n=1") == [([], None)]


def test_repository_policy_grants_are_found_without_a_walk(w):
    assert pages(w, "friend") == [(["open/app"], None)]


def test_identity_prefix_limits_the_walk(w):
    # `zeta` may describe zeta/* only: the walk covers zeta/* and the repositories with a policy.
    assert pages(w, "zeta") == [(["zeta/app"], None)]


def test_work_per_request_is_bounded_and_cursors_reveal_nothing(w):
    # `denied` may describe everything but bulk/*: its policies allow every name, so the walk
    # covers all 2,002 repositories, at most EXAMINE_MAX per request: two empty pages, then the
    # two it may see.
    got = pages(w, "denied")
    assert [items for items, _ in got] == [[], [], ["open/app", "zeta/app"]], got
    for _, link in got[:2]:
        last = parse_qs(urlsplit(link[1:link.index(">")]).query)["last"][0]
        assert "bulk" not in last and last not in BULK, f"cursor reveals a repository: {link}"
    # A page size is kept across the pages.
    got = pages(w, "denied", "/v2/_catalog?n=1")
    assert [items for items, _ in got] == [[], [], ["open/app"], ["zeta/app"]], got
    assert all("n=1&" in link for _, link in got[:3]), got


def test_root_pages_through_everything(w):
    # The root may see everything: pages of EXAMINE_MAX, continued after the last name listed.
    got = pages(w, "root", "/v2/_catalog?n=5000")
    assert [len(items) for items, _ in got] == [EXAMINE_MAX, EXAMINE_MAX, 2], [l for _, l in got]
    assert [link for _, link in got] == [
        f'</v2/_catalog?n=5000&last={BULK[EXAMINE_MAX - 1].replace("/", "%2F")}>; rel="next"',
        f'</v2/_catalog?n=5000&last={BULK[-1].replace("/", "%2F")}>; rel="next"',
        None,
    ]
    assert [n for items, _ in got for n in items] == BULK + ["open/app", "zeta/app"]
    # Smaller pages than the budget end on the page size, as before.
    r = get(w, "/v2/_catalog?n=3", w.tokens["root"])
    assert r.json() == {"repositories": BULK[:3]}
    assert r.headers["Link"] == '</v2/_catalog?n=3&last=bulk%2F0002>; rel="next"'
