/**
 * A tiny loopback HTTP client for the benchmark's setup steps (registering
 * users, minting tokens, checking answers) and the browser-like helpers the
 * login scenario shares: session cookie and `_csrf` extraction.
 */
import { request as httpRequest, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http';

/** The loopback address every request of the benchmark goes to, and nothing else. */
export const LOOPBACK = '127.0.0.1';

/** The production session cookie (see config.ts): `__Host-` prefixed, Secure, HttpOnly. */
export const SESSION_COOKIE = '__Host-tb.sid';

/**
 * Sent on every request to the app. The app runs with TRUST_PROXY=loopback, as
 * it would behind a TLS-terminating proxy on the same host, so express-session
 * treats the request as HTTPS and issues its Secure cookie; the benchmark then
 * sends that cookie back itself over plain loopback HTTP.
 */
export const PROXY_HEADERS: Readonly<Record<string, string>> = Object.freeze({ 'x-forwarded-proto': 'https' });

export interface SimpleResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** One request to 127.0.0.1:port, no connection reuse, bounded by a timeout. */
export function request(
  port: number,
  method: string,
  path: string,
  options: { headers?: OutgoingHttpHeaders; body?: string; timeoutMs?: number } = {},
): Promise<SimpleResponse> {
  return new Promise((resolve, reject) => {
    const body = options.body;
    const headers: OutgoingHttpHeaders = { ...options.headers };
    if (body !== undefined) headers['content-length'] = Buffer.byteLength(body);
    const req = httpRequest({ host: LOOPBACK, port, method, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.setTimeout(options.timeoutMs ?? 10_000, () => req.destroy(new Error(`${method} ${path}: no answer within ${options.timeoutMs ?? 10_000} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

/** The hidden `_csrf` value of a form page, or null. */
export function csrfFrom(html: string): string | null {
  return /name="_csrf" value="([^"]+)"/.exec(html)?.[1] ?? null;
}

/**
 * `name=value` of the session cookie in a response's Set-Cookie header(s), or
 * null. Accepts node's lower-cased headers and autocannon's raw-cased ones.
 */
export function sessionCookieFrom(headers: Record<string, unknown> | undefined, name = SESSION_COOKIE): string | null {
  if (!headers) return null;
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() !== 'set-cookie') continue;
    const list = Array.isArray(value) ? (value as unknown[]) : [value];
    for (const cookie of list) {
      if (typeof cookie === 'string' && cookie.startsWith(`${name}=`)) return cookie.split(';', 1)[0]!;
    }
  }
  return null;
}

/** A header value from autocannon's raw-cased header object. */
export function headerValue(headers: Record<string, unknown> | undefined, name: string): string | undefined {
  if (!headers) return undefined;
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() === name) return Array.isArray(value) ? String(value[0]) : String(value);
  }
  return undefined;
}

/**
 * Headers of a form submission as a browser sends them to the app on `port`
 * (its origin is https, the proxy's scheme), with the session cookie.
 */
export function formPostHeaders(port: number, cookie: string): Record<string, string> {
  return {
    ...PROXY_HEADERS,
    accept: 'text/html',
    origin: `https://${LOOPBACK}:${port}`,
    'sec-fetch-site': 'same-origin',
    'content-type': 'application/x-www-form-urlencoded',
    cookie,
  };
}

/** `application/x-www-form-urlencoded` body from a flat object. */
export function formBody(fields: Record<string, string>): string {
  return new URLSearchParams(fields).toString();
}
