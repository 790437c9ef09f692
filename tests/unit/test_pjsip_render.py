"""Rendering pjsip_callcontrol.conf: exact sections for accounts and trunks,
validation that names the bad value, no configuration injection, deterministic
output, and a section diff for `provision sync`."""

from __future__ import annotations

import hashlib
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callcontrol.domain.errors import InvalidInput
from provisioning.digest import (
    MIN_PASSWORD_LENGTH,
    PASSWORD_ALPHABET,
    generate_password,
    ha1_md5,
    password_digest_value,
)
from provisioning.pjsip import (
    HEADER,
    AccountTemplates,
    Changes,
    SectionId,
    SipAccountSpec,
    TrunkAuth,
    TrunkSpec,
    diff_sections,
    render_pjsip_conf,
)
from provisioning.realtime_backend import account_rows

REALM = "callcontrol"
HA1 = "a226bf85e1b226f36a4c44827ee829cc"  # md5("alice:callcontrol:secret")


def alice(**overrides: object) -> SipAccountSpec:
    fields: dict[str, object] = {
        "login": "alice",
        "domain": "sip.example.com",
        "password_digest_md5_hex": HA1,
    }
    fields.update(overrides)
    return SipAccountSpec(**fields)  # type: ignore[arg-type]


def carrier(**overrides: object) -> TrunkSpec:
    fields: dict[str, object] = {
        "name": "carrier",
        "host": "127.0.0.2",
        "context": "callcontrol-inbound",
        "match_ips": ["127.0.0.2"],
    }
    fields.update(overrides)
    return TrunkSpec(**fields)  # type: ignore[arg-type]


# --- digest --------------------------------------------------------------------


def test_ha1_is_md5_of_login_realm_password() -> None:
    assert ha1_md5("alice", "callcontrol", "secret") == HA1
    assert (
        ha1_md5("alice", "asterisk", "secret")
        == hashlib.md5(b"alice:asterisk:secret").hexdigest()
        == "44fc378e9c253c3e1607c5eae018e345"
    )


def test_ha1_matches_the_example_in_asterisk_22_documentation() -> None:
    # res_pjsip's password_digest help: echo -n "myname:myrealm:mypassword" | openssl dgst -md5
    assert ha1_md5("myname", "myrealm", "mypassword") == "dce9ccd0a69e3ef90d8b9bf725053e78"


def test_password_digest_value_uses_the_md5_algorithm_prefix() -> None:
    assert password_digest_value(HA1.upper()) == f"MD5:{HA1}"


def test_generated_passwords_are_long_varied_and_safe_for_sip_devices() -> None:
    passwords = {generate_password() for _ in range(200)}
    assert len(passwords) == 200
    for password in passwords:
        assert len(password) >= MIN_PASSWORD_LENGTH
        assert set(password) <= set(string.ascii_letters + string.digits)
        assert not set(password) & set("0Oo1lI")
        assert any(c.isdigit() for c in password)
        assert any(c.isupper() for c in password)
        assert any(c.islower() for c in password)
    assert len(PASSWORD_ALPHABET) == 56


def test_short_passwords_are_refused() -> None:
    with pytest.raises(ValueError):
        generate_password(12)


# --- rendering -----------------------------------------------------------------


def test_one_account_renders_exactly_these_lines() -> None:
    text = render_pjsip_conf([alice(callerid="+4930123456")], [], realm=REALM)
    assert text == HEADER + (
        "\n"
        "; SIP account alice@sip.example.com\n"
        "[alice]\n"
        "type=endpoint\n"
        "context=callcontrol-outbound\n"
        "disallow=all\n"
        "allow=ulaw\n"
        "allow=alaw\n"
        "auth=alice\n"
        "aors=alice\n"
        "from_domain=sip.example.com\n"
        "callerid=<+4930123456>\n"
        "direct_media=no\n"
        "rtp_symmetric=yes\n"
        "force_rport=yes\n"
        "rewrite_contact=yes\n"
        "\n"
        "[alice]\n"
        "type=auth\n"
        "auth_type=digest\n"
        "username=alice\n"
        "realm=callcontrol\n"
        f"password_digest=MD5:{HA1}\n"
        "\n"
        "[alice]\n"
        "type=aor\n"
        "max_contacts=1\n"
        "remove_existing=yes\n"
    )


def test_with_templates_an_account_inherits_type_and_policy_from_pjsip_conf() -> None:
    text = render_pjsip_conf([alice()], [], realm=REALM, account_templates=AccountTemplates())
    assert text == HEADER + (
        "\n"
        "; SIP account alice@sip.example.com\n"
        "[alice](callcontrol-account)\n"
        "context=callcontrol-outbound\n"
        "disallow=all\n"
        "allow=ulaw\n"
        "allow=alaw\n"
        "auth=alice\n"
        "aors=alice\n"
        "from_domain=sip.example.com\n"
        "\n"
        "[alice](callcontrol-account-auth)\n"
        "auth_type=digest\n"
        "username=alice\n"
        "realm=callcontrol\n"
        f"password_digest=MD5:{HA1}\n"
        "\n"
        "[alice](callcontrol-account-aor)\n"
        "max_contacts=1\n"
        "remove_existing=yes\n"
    )


def test_template_names_are_validated() -> None:
    with pytest.raises(InvalidInput, match="'bad]name'"):
        AccountTemplates(endpoint="bad]name")


def test_the_header_says_the_file_is_generated() -> None:
    text = render_pjsip_conf([], [], realm=REALM)
    assert text.startswith("; generated by callcontrol — do not edit\n")


def test_no_plain_password_and_no_deprecated_md5_options_are_written() -> None:
    text = render_pjsip_conf([alice()], [], realm=REALM)
    assert "password=" not in text
    assert "md5_cred" not in text
    assert "auth_type=md5" not in text


def test_optional_account_options_are_rendered() -> None:
    account = alice(
        max_contacts=3, codecs=("alaw",), transport="transport-udp", qualify_frequency=60
    )
    text = render_pjsip_conf([account], [], realm=REALM)
    assert "allow=alaw\nauth=alice" in text
    assert "allow=ulaw" not in text
    assert "transport=transport-udp\n" in text
    assert "max_contacts=3\nremove_existing=yes\nqualify_frequency=60\n" in text


def test_a_trunk_renders_endpoint_auth_aor_and_identify() -> None:
    trunk = carrier(
        match_ips=["127.0.0.2", "10.0.0.0/24"],
        outbound_auth=TrunkAuth("acct42", "s3cret!", realm="carrier.example"),
        qualify_frequency=30,
    )
    text = render_pjsip_conf([], [trunk], realm=REALM)
    assert text == HEADER + (
        "\n"
        "; trunk carrier\n"
        "[carrier]\n"
        "type=endpoint\n"
        "transport=transport-udp\n"
        "context=callcontrol-inbound\n"
        "disallow=all\n"
        "allow=ulaw\n"
        "allow=alaw\n"
        "aors=carrier\n"
        "outbound_auth=carrier\n"
        "direct_media=no\n"
        "send_pai=yes\n"
        "trust_id_inbound=yes\n"
        "\n"
        "[carrier]\n"
        "type=auth\n"
        "auth_type=digest\n"
        "username=acct42\n"
        "password=s3cret!\n"
        "realm=carrier.example\n"
        "\n"
        "[carrier]\n"
        "type=aor\n"
        "contact=sip:127.0.0.2:5060\n"
        "qualify_frequency=30\n"
        "\n"
        "[carrier]\n"
        "type=identify\n"
        "endpoint=carrier\n"
        "match=10.0.0.0/24\n"
        "match=127.0.0.2\n"
    )


def test_a_trunk_without_auth_or_addresses_has_neither_section() -> None:
    text = render_pjsip_conf([], [carrier(match_ips=[])], realm=REALM)
    assert "type=auth" not in text
    assert "outbound_auth" not in text
    assert "type=identify" not in text


def test_ipv6_and_host_name_contacts() -> None:
    v6 = render_pjsip_conf([], [carrier(host="2001:db8::1", port=5080)], realm=REALM)
    assert "contact=sip:[2001:db8::1]:5080\n" in v6
    named = render_pjsip_conf([], [carrier(host="SIP.Carrier.example")], realm=REALM)
    assert "contact=sip:sip.carrier.example:5060\n" in named


def test_output_is_sorted_and_independent_of_input_order() -> None:
    accounts = [alice(login="zoe"), alice(login="bob"), alice()]
    trunks = [carrier(name="trunk-b", match_ips=[]), carrier(name="trunk-a")]
    first = render_pjsip_conf(accounts, trunks, realm=REALM)
    second = render_pjsip_conf(reversed(accounts), reversed(trunks), realm=REALM)
    assert first == second
    order = [line for line in first.splitlines() if line.startswith("; ") and "@" in line]
    assert order == [
        "; SIP account alice@sip.example.com",
        "; SIP account bob@sip.example.com",
        "; SIP account zoe@sip.example.com",
    ]
    assert first.index("; trunk trunk-a") < first.index("; trunk trunk-b")


# --- validation ------------------------------------------------------------------


@pytest.mark.parametrize(
    "login",
    ["al", "Alice", "-alice", ".alice", "alice@x", "ali ce", "a" * 33, "alice:x", "anonymous", ""],
)
def test_bad_logins_are_refused_naming_them(login: str) -> None:
    with pytest.raises(InvalidInput) as err:
        alice(login=login)
    assert repr(login) in str(err.value)


@pytest.mark.parametrize("login", ["abc", "alice.smith", "4930123456", "a_b-c.d", "a" * 32])
def test_good_logins_are_accepted(login: str) -> None:
    assert alice(login=login).login == login


@pytest.mark.parametrize(
    "domain",
    ["", "-bad.example", "bad-.example", "a..b", "exa mple.com", "x" * 64 + ".com", "1.2.3"],
)
def test_bad_domains_are_refused_naming_them(domain: str) -> None:
    with pytest.raises(InvalidInput) as err:
        alice(domain=domain)
    assert repr(domain) in str(err.value)


@pytest.mark.parametrize("domain", ["sip.example.com", "localhost", "127.0.0.1", "::1", "a-b.c.d."])
def test_good_domains_are_accepted(domain: str) -> None:
    alice(domain=domain)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("password_digest_md5_hex", "abc"),
        ("password_digest_md5_hex", "g" * 32),
        ("context", "from internal"),
        ("max_contacts", 0),
        ("max_contacts", True),
        ("codecs", ()),
        ("codecs", ("ulaw", "ulaw")),
        ("codecs", ("G.729",)),
        ("callerid", "Alice <123>"),
        ("qualify_frequency", -1),
        ("transport", "udp tcp"),
    ],
)
def test_bad_account_values_are_refused_naming_them(field: str, value: object) -> None:
    with pytest.raises(InvalidInput) as err:
        alice(**{field: value})
    shown = value[-1] if isinstance(value, tuple) and value else value
    assert repr(shown) in str(err.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("port", 0),
        ("port", 70000),
        ("host", "not a host"),
        ("match_ips", ["127.0.0.256"]),
        ("match_ips", ["10.0.0.1/24"]),
        ("match_ips", "127.0.0.2"),
        ("name", "Carrier"),
        ("context", "a;b"),
    ],
)
def test_bad_trunk_values_are_refused_naming_them(field: str, value: object) -> None:
    with pytest.raises(InvalidInput) as err:
        carrier(**{field: value})
    shown = value[0] if isinstance(value, list) else value
    assert repr(shown) in str(err.value)


def test_a_name_used_by_an_account_and_a_trunk_is_refused() -> None:
    with pytest.raises(InvalidInput, match=r"'carrier'.*both account 'carrier' and trunk"):
        render_pjsip_conf([alice(login="carrier")], [carrier()], realm=REALM)


def test_two_accounts_with_the_same_login_are_refused() -> None:
    with pytest.raises(InvalidInput, match="'alice'"):
        render_pjsip_conf([alice(), alice()], [], realm=REALM)


def test_a_bad_realm_is_refused() -> None:
    with pytest.raises(InvalidInput, match="realm 'my realm'"):
        render_pjsip_conf([alice()], [], realm="my realm")


INJECTIONS = [
    "x\n[evil]\ntype=endpoint",
    "x\rcontext=default",
    "x;comment",
    "x]",
    "[x",
    "a=b",
    "x\x00y",
]


@pytest.mark.parametrize("payload", INJECTIONS)
@pytest.mark.parametrize(
    "build",
    [
        lambda p: alice(login=p),
        lambda p: alice(domain=p),
        lambda p: alice(context=p),
        lambda p: alice(callerid=p),
        lambda p: alice(transport=p),
        lambda p: alice(codecs=("ulaw", p)),
        lambda p: alice(password_digest_md5_hex=p),
        lambda p: carrier(name=p),
        lambda p: carrier(host=p),
        lambda p: carrier(match_ips=[p]),
        lambda p: carrier(transport=p),
        lambda p: carrier(outbound_auth=TrunkAuth(p, "pw")),
        lambda p: carrier(outbound_auth=TrunkAuth("user", p)),
        lambda p: carrier(outbound_auth=TrunkAuth("user", "pw", realm=p)),
        lambda p: render_pjsip_conf([], [], realm=p),
    ],
)
def test_injection_attempts_are_refused_in_every_field(build: object, payload: str) -> None:
    with pytest.raises(InvalidInput):
        build(payload)  # type: ignore[operator]


def test_a_trunk_password_is_not_echoed_in_errors_or_repr() -> None:
    with pytest.raises(InvalidInput) as err:
        TrunkAuth("user", "topsecret;x")
    assert "topsecret" not in str(err.value)
    assert "topsecret" not in repr(TrunkAuth("user", "topsecret"))


@given(st.text(min_size=1, max_size=40))
def test_any_login_either_is_refused_or_renders_a_single_clean_section_name(login: str) -> None:
    try:
        account = alice(login=login)
    except InvalidInput:
        return
    text = render_pjsip_conf([account], [], realm=REALM)
    headers = {line for line in text.splitlines() if line.startswith("[")}
    assert headers == {f"[{login}]"}


# --- diff ----------------------------------------------------------------------


def test_identical_renderings_have_no_changes() -> None:
    text = render_pjsip_conf([alice()], [carrier()], realm=REALM)
    changes = diff_sections(text, text)
    assert changes.is_empty
    assert changes.summary() == "no changes"


def test_the_diff_names_added_removed_and_changed_sections() -> None:
    old = render_pjsip_conf([alice(), alice(login="bob")], [carrier()], realm=REALM)
    new = render_pjsip_conf(
        [alice(max_contacts=2), alice(login="carol")],
        [carrier(match_ips=["127.0.0.2", "127.0.0.3"])],
        realm=REALM,
    )
    changes = diff_sections(old, new)
    assert changes == Changes(
        added=(
            SectionId("aor", "carol"),
            SectionId("auth", "carol"),
            SectionId("endpoint", "carol"),
        ),
        removed=(SectionId("aor", "bob"), SectionId("auth", "bob"), SectionId("endpoint", "bob")),
        changed=(SectionId("aor", "alice"), SectionId("identify", "carrier")),
    )
    assert changes.summary() == (
        "added: aor carol, auth carol, endpoint carol; "
        "removed: aor bob, auth bob, endpoint bob; "
        "changed: aor alice, identify carrier"
    )


def test_a_password_change_shows_as_a_changed_auth_without_the_digest() -> None:
    old = render_pjsip_conf([alice()], [], realm=REALM)
    new = render_pjsip_conf([alice(password_digest_md5_hex="0" * 32)], [], realm=REALM)
    changes = diff_sections(old, new)
    assert changes.changed == (SectionId("auth", "alice"),)
    assert HA1 not in changes.summary()


def test_the_diff_tells_templated_sections_apart_by_their_template() -> None:
    templates = AccountTemplates()
    old = render_pjsip_conf([alice()], [], realm=REALM, account_templates=templates)
    new = render_pjsip_conf([alice(max_contacts=2)], [], realm=REALM, account_templates=templates)
    assert diff_sections(old, new).changed == (SectionId("callcontrol-account-aor", "alice"),)
    added = diff_sections(render_pjsip_conf([], [], realm=REALM), new).added
    assert [str(i) for i in added] == [
        "callcontrol-account alice",
        "callcontrol-account-aor alice",
        "callcontrol-account-auth alice",
    ]


def test_switching_to_templates_shows_as_changes() -> None:
    plain = render_pjsip_conf([alice()], [], realm=REALM)
    templated = render_pjsip_conf([alice()], [], realm=REALM, account_templates=AccountTemplates())
    assert not diff_sections(plain, templated).is_empty


def test_the_diff_ignores_comments_and_blank_lines() -> None:
    text = render_pjsip_conf([alice()], [], realm=REALM)
    edited = "; a note\n\n" + text.replace("\n\n", "\n\n\n")
    assert diff_sections(text, edited).is_empty


def test_realtime_rows_of_an_account_behind_a_path_proxy_keep_the_path_and_the_contact() -> None:
    plain = account_rows(alice(), realm=REALM)
    assert "support_path" not in plain["aor"], "older ps_aors tables stay writable"
    assert plain["endpoint"]["rewrite_contact"] == "yes"
    behind = account_rows(alice(), realm=REALM, support_path=True)
    assert behind["aor"]["support_path"] == "yes"
    assert behind["endpoint"]["rewrite_contact"] == "no", "the source is the edge, not the phone"
