const BASE = 'http://return-to.invalid';

/**
 * Returns `value` when it is a path on this site, `/` otherwise. Refuses
 * absolute and scheme-relative URLs (`//evil`, `/\evil`), `javascript:`,
 * control characters and anything that would leave the origin once parsed.
 *
 * @example safeReturnTo('/token?x=1') // '/token?x=1'
 * @example safeReturnTo('//evil.example') // '/'
 */
export function safeReturnTo(value: unknown): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > 512) return '/';
  if (!value.startsWith('/') || value.startsWith('//') || value.includes('\\')) return '/';
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(value)) return '/';
  let url: URL;
  try {
    url = new URL(value, BASE);
  } catch {
    return '/';
  }
  if (url.origin !== BASE) return '/';
  // Dot segments collapse while parsing: '/.//evil', '/%2e//evil' and '/a/..//evil' all become '//evil',
  // which a browser reads as another host.
  if (url.pathname.startsWith('//')) return '/';
  return `${url.pathname}${url.search}${url.hash}`;
}
