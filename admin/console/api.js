// The admin API, as the console calls it: the admin token from
// sessionStorage as a Bearer header, JSON in and out, RFC 9457 problems
// turned into ApiError.

const TOKEN_KEY = "keygate.adminToken";

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  sessionStorage.setItem(TOKEN_KEY, value);
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

// ApiError is a problem answered by the API: status, title, detail and the
// per-field errors ({field, detail}).
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.title = problem.title || "";
    this.detail = problem.detail || "";
    this.errors = Array.isArray(problem.errors) ? problem.errors : [];
  }
}

// request calls the API; it resolves to the decoded body (null for 204) or
// rejects with an ApiError. withToken lets sign-in try a token before it
// is kept.
export async function request(method, path, body, withToken = token()) {
  const headers = { Accept: "application/json" };
  if (withToken) headers.Authorization = `Bearer ${withToken}`;
  const init = { method, headers, cache: "no-store", credentials: "omit", redirect: "error" };
  if (body !== undefined) {
    headers["Content-Type"] = method === "PATCH" ? "application/merge-patch+json" : "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, { title: "Network error", detail: "The console could not reach keygate. Is it still running?" });
  }
  if (response.status === 204) return null;
  const type = response.headers.get("Content-Type") || "";
  const data = type.includes("json") ? await response.json().catch(() => ({})) : {};
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

const key = (id) => `/v1/keys/${encodeURIComponent(id)}`;

export const api = {
  whoami: (withToken) => request("GET", "/v1/whoami", undefined, withToken),
  modules: () => request("GET", "/v1/modules"),
  listKeys: (params) => request("GET", `/v1/keys?${new URLSearchParams(params)}`),
  createKey: (body) => request("POST", "/v1/keys", body),
  updateKey: (id, patch) => request("PATCH", key(id), patch),
  revokeKey: (id) => request("DELETE", key(id)),
  rotateKey: (id, body) => request("POST", `${key(id)}/rotate`, body),
  disableKey: (id) => request("POST", `${key(id)}/disable`),
  enableKey: (id) => request("POST", `${key(id)}/enable`),
  keyEvents: (id) => request("GET", `${key(id)}/events`),
  getKey: (id) => request("GET", key(id)),
};
