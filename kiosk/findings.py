"""The findings rules of sync-api.md: what makes a unit non-compliant, in order of severity.

Pure definitions shared by the collector's queries, its API, the dashboard and the CLI: the rule
names, their order, their thresholds, and how each is said in plain words. The counting itself is
done in the database (kiosk.collector.storage), never by loading entries into Python.
"""

from __future__ import annotations

from enum import StrEnum


class Rule(StrEnum):
    """In order of severity, most severe first (the order of the spec's table)."""

    OVERRIDE_ENTRIES = "override_entries"
    CODE_REUSE = "code_reuse"
    LOG_GAP = "log_gap"
    UNCHECKED_ENTRIES = "unchecked_entries"
    THERMOMETER_FAULT = "thermometer_fault"
    SILENT_KIOSK = "silent_kiosk"
    STALE_TRUST = "stale_trust"
    POLICY_DRIFT = "policy_drift"
    CLOCK_SKEW = "clock_skew"


SEVERITY = {rule: rank for rank, rule in enumerate(Rule)}

# code_reuse: one subject allowed more than this many times within the window, at one venue.
CODE_REUSE_MAX_ALLOWS = 3
CODE_REUSE_WINDOW_S = 600
# log_gap: a missing seq counts once this long has passed since the heartbeat that reported it.
LOG_GAP_GRACE_S = 3600
# thermometer_fault: stuck (enough readings, tiny spread) or too many implausible readings.
STUCK_MIN_READINGS = 20
STUCK_MAX_STDDEV_C = 0.05
IMPLAUSIBLE_MAX_SHARE = 0.20
PLAUSIBLE_MIN_C = 34.0
PLAUSIBLE_MAX_C = 42.5
# silent_kiosk default (collector config `findings.silent_after` overrides it).
SILENT_AFTER_S = 15 * 60
# policy_drift: reporting another policy_version for longer than this.
POLICY_DRIFT_AFTER_S = 3600
# clock_skew: a heartbeat's ts off the receive time by more than this.
CLOCK_SKEW_MAX_S = 120

PLAIN_WORDS: dict[Rule, dict[str, str]] = {
    Rule.OVERRIDE_ENTRIES: {
        "en": "Staff let people in whom the rule had denied",
        "zh": "工作人员放行了被拒绝的人员",
    },
    Rule.CODE_REUSE: {
        "en": "One health code let in more than 3 times within 10 minutes",
        "zh": "同一健康码10分钟内放行超过3次",
    },
    Rule.LOG_GAP: {
        "en": "Entries missing from the kiosk's log, or the log was altered",
        "zh": "终端记录缺失或被篡改",
    },
    Rule.UNCHECKED_ENTRIES: {
        "en": "People let in without every required check",
        "zh": "未完成必检项目即放行",
    },
    Rule.THERMOMETER_FAULT: {
        "en": "Thermometer stuck, implausible or reported faulty",
        "zh": "体温计读数异常或故障",
    },
    Rule.SILENT_KIOSK: {
        "en": "Kiosk silent for longer than allowed",
        "zh": "终端长时间未上报",
    },
    Rule.STALE_TRUST: {
        "en": "Kiosk could not verify codes: its trust list was too old",
        "zh": "终端信任列表过期，无法核验健康码",
    },
    Rule.POLICY_DRIFT: {
        "en": "Kiosk ran another policy than the one published",
        "zh": "终端执行的策略与发布的不一致",
    },
    Rule.CLOCK_SKEW: {
        "en": "Kiosk clock off by more than 2 minutes",
        "zh": "终端时钟偏差超过2分钟",
    },
}
