// Formatting: dates, relative times in calendar days, a key's status as
// the list shows it, and the one-a-line text fields.

const DAY = 86400 * 1000;
// soon is how close to its expiry an active key is "expiring soon": a week,
// then, once signed in, the longest expiry warning lead time (webhooks.js).
let soon = 7 * DAY;

// soonWindow and setSoonWindow read and set it, in milliseconds.
export const soonWindow = () => soon;
export function setSoonWindow(ms) {
  soon = ms;
}

const dateFormat = new Intl.DateTimeFormat(undefined, { year: "numeric", month: "short", day: "numeric" });
const dateTimeFormat = new Intl.DateTimeFormat(undefined, { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });

export function fmtDate(iso) {
  return iso ? dateFormat.format(new Date(iso)) : "";
}

export function fmtDateTime(iso) {
  return iso ? dateTimeFormat.format(new Date(iso)) : "";
}

export function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

// calendarDays is how many days at is after now, counted in calendar days
// here: 1 for any time tomorrow, -1 for yesterday.
export function calendarDays(at, now = new Date()) {
  const midnight = (d) => new Date(d.getFullYear(), d.getMonth(), d.getDate());
  return Math.round((midnight(at) - midnight(now)) / DAY);
}

// relativeTime says when iso is from now: "in 3 hours" or "5 minutes ago"
// today, "tomorrow", "yesterday" or "in 30 days" on other days.
export function relativeTime(iso, now = new Date()) {
  const at = new Date(iso);
  const days = calendarDays(at, now);
  if (days !== 0) return relative.format(days, "day");
  const minutes = Math.round((at - now) / 60000);
  if (Math.abs(minutes) < 1) return "just now";
  if (Math.abs(minutes) < 60) return relative.format(minutes, "minute");
  return relative.format(Math.round(minutes / 60), "hour");
}

// statusOf is what the list shows for a key: the API's status (active,
// disabled, expired, revoked) refined with expiring soon and rotated.
export function statusOf(k, now = new Date()) {
  if (k.status === "revoked") return { cls: "revoked", label: "Revoked", note: `on ${fmtDate(k.revoked_at)}` };
  if (k.status === "disabled") return { cls: "disabled", label: "Disabled", note: `since ${fmtDate(k.disabled_at)}` };
  if (k.status === "expired") return { cls: "expired", label: "Expired", note: k.rotated_to ? "rotated" : `on ${fmtDate(k.expires_at)}` };
  if (k.rotated_to) return { cls: "rotated", label: "Rotated", note: `grace ends ${relativeTime(k.expires_at, now)}` };
  if (k.expires_at && Date.parse(k.expires_at) - now < soon) {
    return { cls: "soon", label: "Expiring soon", note: `expires ${relativeTime(k.expires_at, now)}` };
  }
  return { cls: "active", label: "Active", note: "" };
}

export function isoDate(d) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

// endOfDay is the last second of a date picked here ("2027-01-31"), as an
// RFC 3339 time.
export function endOfDay(day) {
  const [y, m, d] = day.split("-").map(Number);
  return new Date(y, m - 1, d, 23, 59, 59).toISOString();
}

export function metadataText(m) {
  return Object.keys(m).sort().map((k) => `${k}=${m[k]}`).join(" ");
}

export function linesOf(text) {
  return text.split("\n").map((l) => l.trim()).filter(Boolean);
}

// metadataOf reads key=value lines; a line without "=" is kept whole as a
// key with an empty value, which the API refuses, naming the problem.
export function metadataOf(text) {
  const out = {};
  for (const line of linesOf(text)) {
    const i = line.indexOf("=");
    out[i < 0 ? line : line.slice(0, i).trim()] = i < 0 ? "" : line.slice(i + 1).trim();
  }
  return out;
}

export function capitalize(s) {
  return s ? s[0].toUpperCase() + s.slice(1) : s;
}
