"""The dashboard's words in Chinese and English, the choice of language, and how times and
durations are written.

The language is the `kiosk_lang` cookie when set (the switch in the page header), otherwise the
best of `Accept-Language`, otherwise Chinese (the deployment's language). The findings are said
in the words of kiosk.findings (PLAIN_WORDS, KIND_WORDS), the same the CLI uses.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Literal

from kiosk.findings import KIND_WORDS, PLAIN_WORDS, Kind, Rule

Lang = Literal["zh", "en"]
LANGS: tuple[Lang, ...] = ("zh", "en")
DEFAULT_LANG: Lang = "zh"
LANG_COOKIE = "kiosk_lang"
LANG_NAMES: dict[Lang, str] = {"zh": "中文", "en": "English"}
HTML_LANG: dict[Lang, str] = {"zh": "zh-CN", "en": "en"}

MESSAGES: dict[str, dict[Lang, str]] = {
    "app_name": {"zh": "防疫核验督查", "en": "Kiosk inspections"},
    "app_tagline": {"zh": "辖区场所合规情况", "en": "Compliance of the units in your region"},
    "skip": {"zh": "跳到正文", "en": "Skip to content"},
    "language": {"zh": "语言", "en": "Language"},
    "sign_in": {"zh": "登录", "en": "Sign in"},
    "sign_out": {"zh": "退出", "en": "Sign out"},
    "sign_in_title": {"zh": "督查人员登录", "en": "Inspector sign-in"},
    "sign_in_lead": {
        "zh": "请输入管理员发给您的督查令牌。令牌只用于换取本次登录，不会保存在浏览器中。",
        "en": "Enter the inspector token your administrator gave you. It is exchanged for this "
        "sign-in and is not kept in the browser.",
    },
    "token": {"zh": "督查令牌", "en": "Inspector token"},
    "token_hint": {"zh": "43 个字符", "en": "43 characters"},
    "signed_out": {"zh": "您已退出登录。", "en": "You have signed out."},
    "session_ended": {
        "zh": "登录已失效（已过期，或令牌已被吊销），请重新登录。",
        "en": "Your session has ended (it expired or the token was revoked). Please sign in again.",
    },
    "error_token_format": {
        "zh": "这不是有效的令牌格式：令牌为 43 个字符（字母、数字、- 和 _）。",
        "en": "That is not a token: a token is 43 characters (letters, digits, - and _).",
    },
    "error_token_unknown": {
        "zh": "令牌无效或已被吊销，请向管理员确认。",
        "en": "This token is not valid or has been revoked. Check with your administrator.",
    },
    "error_token_kiosk": {
        "zh": "这是终端令牌，不能登录督查页面。请使用督查令牌。",
        "en": "This is a kiosk token; kiosks cannot sign in here. Use an inspector token.",
    },
    "error_token_role": {
        "zh": "只有督查令牌可以登录督查页面。",
        "en": "Only inspector tokens can sign in here.",
    },
    "error_form_expired": {
        "zh": "表单已过期，请重试。",
        "en": "The form has expired; please try again.",
    },
    "error_plain_http": {
        "zh": "只能通过 HTTPS 登录（本机回环地址除外）。",
        "en": "Sign in over HTTPS (plain HTTP is allowed only from this machine).",
    },
    "signed_in_as": {"zh": "当前用户", "en": "Signed in as"},
    "region": {"zh": "辖区", "en": "Region"},
    "nav_units": {"zh": "不合规场所", "en": "Non-compliant units"},
    "units_title": {"zh": "不合规场所", "en": "Non-compliant units"},
    "units_lead": {
        "zh": "窗口内至少有一项问题的场所，最严重的在前。",
        "en": "Units with at least one finding in the window, most severe first.",
    },
    "filters": {"zh": "筛选", "en": "Filters"},
    "district": {"zh": "区域", "en": "District"},
    "since": {"zh": "开始（UTC）", "en": "From (UTC)"},
    "until": {"zh": "结束（UTC）", "en": "Until (UTC)"},
    "apply": {"zh": "应用", "en": "Apply"},
    "last_24h": {"zh": "最近 24 小时", "en": "Last 24 hours"},
    "last_7d": {"zh": "最近 7 天", "en": "Last 7 days"},
    "window": {"zh": "时间窗口", "en": "Window"},
    "window_invalid": {
        "zh": "时间格式不正确，已使用最近 24 小时。",
        "en": "That time could not be read; showing the last 24 hours.",
    },
    "window_reversed": {
        "zh": "开始时间须早于结束时间，已使用最近 24 小时。",
        "en": "The start must be before the end; showing the last 24 hours.",
    },
    "window_too_long": {
        "zh": "时间窗口最长 31 天，已使用最近 24 小时。",
        "en": "A window may be at most 31 days; showing the last 24 hours.",
    },
    "units_found": {"zh": "不合规场所：", "en": "Units with findings:"},
    "no_units": {
        "zh": "该时间窗口内没有不合规的场所。",
        "en": "No unit has a finding in this window.",
    },
    "open_unit": {"zh": "查看场所", "en": "Open unit"},
    "venue_id": {"zh": "场所编号", "en": "Unit id"},
    "status": {"zh": "状态", "en": "Status"},
    "status_open": {"zh": "正常营业", "en": "Open"},
    "status_closed": {"zh": "停业整改", "en": "Closed for rectification"},
    "finding": {"zh": "问题", "en": "Finding"},
    "findings": {"zh": "发现的问题", "en": "Findings"},
    "what": {"zh": "情况", "en": "What"},
    "kiosk": {"zh": "终端", "en": "Kiosk"},
    "count": {"zh": "次数", "en": "Count"},
    "first": {"zh": "首次", "en": "First"},
    "last": {"zh": "最近", "en": "Last"},
    "samples": {"zh": "样例记录", "en": "Sample entries"},
    "no_findings": {"zh": "该时间窗口内没有发现问题。", "en": "No finding in this window."},
    "unit_title": {"zh": "场所详情", "en": "Unit"},
    "back_to_list": {"zh": "返回列表", "en": "Back to the list"},
    "kiosks": {"zh": "终端", "en": "Kiosks"},
    "last_heartbeat": {"zh": "最近心跳", "en": "Last heartbeat"},
    "sensors": {"zh": "传感器", "en": "Sensors"},
    "camera": {"zh": "摄像头", "en": "camera"},
    "thermometer": {"zh": "体温计", "en": "thermometer"},
    "backlog": {"zh": "待上传", "en": "Backlog"},
    "trust_age": {"zh": "信任列表时效", "en": "Trust list age"},
    "clock_offset": {"zh": "时钟偏差", "en": "Clock offset"},
    "policy": {"zh": "策略", "en": "Policy"},
    "never": {"zh": "从未", "en": "never"},
    "unknown": {"zh": "未知", "en": "unknown"},
    "ok": {"zh": "正常", "en": "ok"},
    "fault": {"zh": "故障", "en": "fault"},
    "no_kiosks": {"zh": "该场所没有终端。", "en": "This unit has no kiosk."},
    "chart_title": {
        "zh": "最近 24 小时每小时通行与拒绝",
        "en": "Entries and denials per hour, last 24 hours",
    },
    "chart_entries": {"zh": "通行", "en": "Entries allowed"},
    "chart_denials": {"zh": "拒绝", "en": "Denials"},
    "chart_label": {
        "zh": "柱状图：共 {entries} 次通行，{denials} 次拒绝",
        "en": "Bar chart: {entries} entries allowed and {denials} denials in total",
    },
    "chart_table": {"zh": "查看数据表", "en": "Show the numbers"},
    "hour": {"zh": "小时（UTC）", "en": "Hour (UTC)"},
    "counts": {"zh": "窗口内记录", "en": "Entries in the window"},
    "entries_total": {"zh": "合计", "en": "Total"},
    "decision": {"zh": "决定", "en": "Decision"},
    "reason": {"zh": "原因", "en": "Reason"},
    "allow": {"zh": "放行", "en": "Allowed"},
    "deny": {"zh": "拒绝", "en": "Denied"},
    "no_reason": {"zh": "—", "en": "—"},
    "no_entries": {"zh": "该时间窗口内没有记录。", "en": "No entry in this window."},
    "history": {"zh": "状态记录", "en": "Status history"},
    "no_history": {"zh": "尚无状态变更。", "en": "The status has never been changed."},
    "when": {"zh": "时间", "en": "When"},
    "by": {"zh": "操作人", "en": "By"},
    "note": {"zh": "说明", "en": "Note"},
    "actions": {"zh": "处置", "en": "Actions"},
    "download_csv": {"zh": "下载 CSV", "en": "Download CSV"},
    "note_label": {
        "zh": "说明（必填，最多 500 字）",
        "en": "Note (required, at most 500 characters)",
    },
    "order_close": {"zh": "责令停业整改", "en": "Order closed for rectification"},
    "order_reopen": {"zh": "准予恢复营业", "en": "Let it reopen"},
    "confirm_close": {
        "zh": "确定责令该场所停业整改吗？其终端将显示停业。",
        "en": "Order this unit closed? Its kiosks will say the venue is closed.",
    },
    "changed_closed": {
        "zh": "已责令停业整改，终端将在下次同步时显示停业。",
        "en": "The unit is ordered closed; its kiosks show it at their next sync.",
    },
    "changed_open": {"zh": "已准予恢复营业。", "en": "The unit may reopen."},
    "error_note_empty": {"zh": "请填写说明。", "en": "Write a note."},
    "error_note_long": {
        "zh": "说明最多 500 字。",
        "en": "The note may hold at most 500 characters.",
    },
    "chars_left": {"zh": "剩余字数", "en": "characters left"},
    "since_set": {"zh": "设置于", "en": "since"},
    "error_title": {"zh": "出错了", "en": "Something went wrong"},
    "error_403": {
        "zh": "此内容不在您的辖区范围内。",
        "en": "This is outside your region.",
    },
    "error_404": {"zh": "没有这个页面或场所。", "en": "There is no such page or unit."},
    "error_405": {"zh": "不支持此操作。", "en": "That action is not supported here."},
    "error_400": {"zh": "请求有误。", "en": "The request was not understood."},
    "error_429": {
        "zh": "此地址登录失败次数过多，请稍后再试。",
        "en": "Too many failed sign-ins from this address; try again shortly.",
    },
    "error_503": {
        "zh": "数据库暂时无法响应，请稍后再试。",
        "en": "The database cannot answer now; try again shortly.",
    },
    "error_500": {
        "zh": "服务器内部错误，详情见收集服务日志。",
        "en": "Internal error; the collector's log has the details.",
    },
    "go_home": {"zh": "返回首页", "en": "Back to the start"},
    "privacy_note": {
        "zh": "本页面只显示匿名编号，不含个人信息；查看记录会被审计。",
        "en": "This page shows pseudonymous ids only, no personal data; reads are audited.",
    },
    "times_utc": {"zh": "时间均为 UTC。", "en": "Times are UTC."},
    "minutes_ago": {"zh": "{n} 分钟前", "en": "{n} min ago"},
    "hours_ago": {"zh": "{n} 小时前", "en": "{n} h ago"},
    "days_ago": {"zh": "{n} 天前", "en": "{n} d ago"},
    "just_now": {"zh": "刚刚", "en": "just now"},
    "decision_allow": {"zh": "放行", "en": "allowed"},
    "decision_deny": {"zh": "拒绝", "en": "denied"},
}


def translate(key: str, lang: Lang, **values: object) -> str:
    """The message `key` in `lang`; an unknown key shows itself (a visible, harmless slip)."""
    words = MESSAGES.get(key)
    text = words[lang] if words else key
    return text.format(**values) if values else text


def rule_words(rule: str, lang: Lang) -> str:
    try:
        return PLAIN_WORDS[Rule(rule)][lang]
    except ValueError:
        return rule


def kind_words(kind: str, lang: Lang) -> str:
    try:
        return KIND_WORDS[Kind(kind)][lang]
    except ValueError:
        return kind


def parse_lang(value: str | None) -> Lang | None:
    if value == "zh":
        return "zh"
    if value == "en":
        return "en"
    return None


def negotiate(cookie: str | None, accept_language: str | None) -> Lang:
    """The cookie's language, else the most preferred of zh/en in Accept-Language, else zh."""
    chosen = parse_lang(cookie)
    if chosen is not None:
        return chosen
    best: tuple[float, int, Lang] | None = None
    for position, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        primary = parse_lang(tag.strip().lower().split("-")[0])
        if primary is None:
            continue
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if not math.isfinite(quality) or quality <= 0:
            continue
        candidate = (quality, -position, primary)
        if best is None or candidate[:2] > best[:2]:
            best = candidate
    return best[2] if best else DEFAULT_LANG


def format_time(unix_seconds: float | None, lang: Lang) -> str:
    if unix_seconds is None:
        return translate("never", lang)
    return datetime.fromtimestamp(unix_seconds, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def format_minute(unix_seconds: float) -> str:
    return datetime.fromtimestamp(unix_seconds, tz=UTC).strftime("%Y-%m-%d %H:%M")


def format_ago(unix_seconds: float | None, now: float, lang: Lang) -> str:
    if unix_seconds is None:
        return ""
    elapsed = max(0.0, now - unix_seconds)
    if elapsed < 60:
        return translate("just_now", lang)
    if elapsed < 3600:
        return translate("minutes_ago", lang, n=int(elapsed // 60))
    if elapsed < 86400 * 2:
        return translate("hours_ago", lang, n=int(elapsed // 3600))
    return translate("days_ago", lang, n=int(elapsed // 86400))


def format_duration(seconds: float | None, lang: Lang) -> str:
    """A duration for the kiosk table: `45 s`, `12 min`, `3.5 h`, `2.0 d`."""
    if seconds is None:
        return translate("unknown", lang)
    sign = "-" if seconds < 0 else ""
    size = abs(seconds)
    if size < 10:
        return f"{sign}{size:.1f} s"
    if size < 90:
        return f"{sign}{size:.0f} s"
    if size < 90 * 60:
        return f"{sign}{size / 60:.0f} min"
    if size < 48 * 3600:
        return f"{sign}{size / 3600:.1f} h"
    return f"{sign}{size / 86400:.1f} d"
