import { isIPv6 } from 'node:net';
import UAParser from 'ua-parser-js';
import type { SessionInfo } from '../services/sessions.js';

/** A session as the account page shows it. */
export interface SessionView extends SessionInfo {
  /** The client address as people write it (`127.0.0.1`, not `::ffff:127.0.0.1`), or null when unknown. */
  address: string | null;
  /** "Chrome 156 on Linux", or null when the browser sent no user agent; `userAgent` stays the raw string. */
  browser: string | null;
}

/** What the account page needs of one session. */
export function sessionView(session: SessionInfo): SessionView {
  return { ...session, address: displayAddress(session.ip), browser: describeUserAgent(session.userAgent) };
}

const MAPPED = /^\[::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})\]$/;

/**
 * An address for people to read: an IPv4-mapped IPv6 address (how a
 * dual-stack server sees IPv4 clients) becomes the IPv4 address; any other
 * address is returned as it is.
 *
 * @example displayAddress('::ffff:127.0.0.1') // '127.0.0.1'
 * @example displayAddress('2001:db8::1') // '2001:db8::1'
 */
export function displayAddress(ip: string | null | undefined): string | null {
  if (!ip) return null;
  if (!isIPv6(ip)) return ip;
  let host: string;
  try {
    // The URL parser writes every spelling (::ffff:1.2.3.4, ::FFFF:0102:0304, 0:0:0:0:0:ffff:…) as ::ffff:hhhh:hhhh.
    host = new URL(`http://[${ip}]/`).hostname;
  } catch {
    return ip; // e.g. a zone id (fe80::1%eth0): not mapped, shown as it is
  }
  const m = MAPPED.exec(host);
  if (!m) return ip;
  const high = parseInt(m[1]!, 16);
  const low = parseInt(m[2]!, 16);
  return [high >> 8, high & 0xff, low >> 8, low & 0xff].join('.');
}

/**
 * A user agent in words: browser name and major version, " on " and the
 * operating system, from ua-parser-js. Parts it cannot tell are left out;
 * with no browser name it says "Unknown browser". Null when there is no user
 * agent at all.
 *
 * @example describeUserAgent('Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36') // 'Chrome 156 on Linux'
 * @example describeUserAgent('curl/8.5.0') // 'Unknown browser'
 */
export function describeUserAgent(userAgent: string | null | undefined): string | null {
  if (!userAgent) return null;
  const { browser, os } = UAParser(userAgent);
  const name = browser.name ? [browser.name, browser.major].filter(Boolean).join(' ') : 'Unknown browser';
  return os.name ? `${name} on ${os.name}` : name;
}
