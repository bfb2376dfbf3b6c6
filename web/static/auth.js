// Signing in. A dev-mode server (no key configured), or one with dev
// tokens enabled beside its secret (a test cluster), signs a token for any
// name at POST /api/dev/token; any other server needs a token from its
// operator, pasted in or given in the page's URL as #token=<jwt>. The
// credentials live in sessionStorage: they survive a reload of this tab and
// nothing else.

const STORE = "chatd.auth";

/** devToken asks a dev-mode server for a token for name. */
export async function devToken(name) {
  const res = await fetch("/api/dev/token", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ name }),
    cache: "no-store",
  });
  let body = {};
  try {
    body = await res.json();
  } catch {
    // not JSON: the status says enough
  }
  if (!res.ok) {
    const err = new Error(body.message || `the server answered ${res.status}`);
    err.status = res.status;
    throw err;
  }
  // The token's own exp is what the server enforces (it closes with 4001
  // then), so it is what the refresh is timed by.
  let exp = body.exp;
  try {
    exp = decodeToken(body.token).exp ?? exp;
  } catch {
    // not a JWT we can read: trust the answer
  }
  return { mode: "dev", token: body.token, user: body.user, name: body.name, exp };
}

/**
 * devModeAvailable reports whether the server signs dev tokens: GET
 * /api/dev/token answers {"dev": true} when it does and {"dev": false}
 * when it does not, both with a 200, so asking logs no failed request.
 */
export async function devModeAvailable() {
  try {
    const res = await fetch("/api/dev/token", { cache: "no-store" });
    if (!res.ok) return false;
    const body = await res.json();
    return body?.dev === true;
  } catch {
    return false;
  }
}

/** decodeToken reads a JWT's claims (unverified: the server verifies) for display and expiry. */
export function decodeToken(token) {
  const parts = token.split(".");
  if (parts.length !== 3) throw new Error("a token has three parts separated by dots");
  let json;
  try {
    const b64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4)), (c) => c.charCodeAt(0));
    json = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw new Error("this is not a JWT");
  }
  if (typeof json.sub !== "string" || json.sub === "") throw new Error("the token has no sub (user)");
  return { sub: json.sub, name: typeof json.name === "string" && json.name ? json.name : json.sub, exp: typeof json.exp === "number" ? json.exp : undefined };
}

/** pastedToken turns a token the user gave into credentials, or throws why it cannot be used. */
export function pastedToken(token) {
  token = token.trim().replace(/^Bearer\s+/i, "");
  const claims = decodeToken(token);
  if (claims.exp !== undefined && claims.exp * 1000 <= Date.now()) throw new Error("this token has expired");
  return { mode: "token", token, user: claims.sub, name: claims.name, exp: claims.exp };
}

/** tokenFromFragment takes #token=<jwt> out of the URL (so it is not bookmarked or shared) and returns it. */
export function tokenFromFragment() {
  const params = new URLSearchParams(window.location.hash.slice(1));
  const token = params.get("token");
  if (!token) return null;
  history.replaceState(null, "", window.location.pathname + window.location.search);
  return token;
}

export function saveAuth(auth) {
  try {
    sessionStorage.setItem(STORE, JSON.stringify(auth));
  } catch {
    // storage disabled: the session lasts as long as the page
  }
}

export function loadAuth() {
  try {
    const a = JSON.parse(sessionStorage.getItem(STORE) ?? "null");
    return a && typeof a.token === "string" ? a : null;
  } catch {
    return null;
  }
}

export function clearAuth() {
  try {
    sessionStorage.removeItem(STORE);
  } catch {
    // nothing stored
  }
}
