"""engine.runtime.reload: what a SIGHUP applies now, and what waits for a restart."""

from __future__ import annotations

from engine.config import from_dict
from engine.runtime.reload import plan_reload


def test_policies_apply_now_and_process_settings_wait_for_a_restart() -> None:
    running = from_dict(
        {
            "workers": 2,
            "smtp": {"helo_name": "mta.example.com"},
            "domains": {"big.test": {"max_connections": 1}},
        }
    )
    new = from_dict(
        {
            "workers": 4,
            "spool": {"path": "/elsewhere"},
            "smtp": {"helo_name": "mta2.example.com"},
            "dns": {"nameservers": ["127.0.0.1:5353"]},
            "domains": {"big.test": {"max_connections": 3}, "new.test": {"tls": "required"}},
            "log": {"path": "/var/log/volley/new.jsonl"},
        }
    )
    plan = plan_reload(running, new)
    s = plan.settings
    assert s.policy("big.test").max_connections == 3
    assert s.policy("new.test").tls.value == "required"
    assert s.helo_name == "mta2.example.com" and str(s.log_path) == "/var/log/volley/new.jsonl"
    assert s.workers == 2 and s.spool_path == running.spool_path
    assert s.dns_nameservers == running.dns_nameservers
    assert "domains.big.test.max_connections" in plan.applied
    assert "smtp.helo_name" in plan.applied and "log.path" in plan.applied
    assert set(plan.at_restart) == {"workers", "spool.path", "dns.nameservers"}


def test_the_same_file_changes_nothing() -> None:
    s = from_dict({"domains": {"x.test": {"max_connections": 2}}})
    plan = plan_reload(s, from_dict({"domains": {"x.test": {"max_connections": 2}}}))
    assert plan.applied == () and plan.at_restart == () and plan.settings == s


def test_a_removed_domain_section_falls_back_to_the_default() -> None:
    running = from_dict({"domains": {"x.test": {"max_connections": 2}}})
    plan = plan_reload(running, from_dict({}))
    assert plan.settings.policy("x.test") == plan.settings.default_policy
    assert "domains.x.test.max_connections" in plan.applied


def test_listener_addresses_wait_for_a_restart_its_rules_apply_now() -> None:
    running = from_dict({"smtpd": {"listen": ["127.0.0.1:2525"], "relay_networks": []}})
    new = from_dict(
        {
            "smtpd": {
                "listen": ["0.0.0.0:587"],
                "relay_networks": ["10.0.0.0/8"],
                "max_recipients": 50,
            }
        }
    )
    plan = plan_reload(running, new)
    assert plan.settings.smtpd.listen == ("127.0.0.1:2525",)
    assert plan.settings.smtpd.relay_networks == ("10.0.0.0/8",)
    assert plan.settings.smtpd.max_recipients == 50
    assert plan.at_restart == ("smtpd.listen",)
    assert set(plan.applied) == {"smtpd.relay_networks", "smtpd.max_recipients"}
