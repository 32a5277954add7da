import { expect } from 'chai';
import { describeUserAgent, displayAddress, sessionView } from '../routes/session-view.js';

const CHROME_LINUX = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36';
const FIREFOX_WINDOWS = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:140.0) Gecko/20100101 Firefox/140.0';
const SAFARI_IPHONE = 'Mozilla/5.0 (iPhone; CPU iPhone OS 18_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.5 Mobile/15E148 Safari/604.1';

describe('session view: addresses', () => {
  const cases: Array<[string | null, string | null]> = [
    ['::ffff:127.0.0.1', '127.0.0.1'],
    ['::FFFF:203.0.113.10', '203.0.113.10'],
    ['0:0:0:0:0:ffff:198.51.100.20', '198.51.100.20'],
    ['::ffff:7f00:1', '127.0.0.1'],
    ['127.0.0.1', '127.0.0.1'],
    ['::1', '::1'],
    ['2001:db8::1', '2001:db8::1'],
    ['2001:DB8:0:0:0:0:0:1', '2001:DB8:0:0:0:0:0:1'],
    ['::127.0.0.1', '::127.0.0.1'],
    ['64:ff9b::203.0.113.10', '64:ff9b::203.0.113.10'],
    ['fe80::1%eth0', 'fe80::1%eth0'],
    [null, null],
    ['', null],
  ];
  for (const [ip, shown] of cases) {
    it(`shows ${JSON.stringify(ip)} as ${JSON.stringify(shown)}`, () => {
      expect(displayAddress(ip)).to.equal(shown);
    });
  }
});

describe('session view: user agents', () => {
  const cases: Array<[string | null, string | null]> = [
    [CHROME_LINUX, 'Chrome 156 on Linux'],
    [FIREFOX_WINDOWS, 'Firefox 140 on Windows'],
    [SAFARI_IPHONE, 'Mobile Safari 18 on iOS'],
    ['curl/8.5.0', 'Unknown browser'],
    ['Something (X11; Linux x86_64)', 'Unknown browser on Linux'],
    ['MineBrowser/1.0 (<b>bold</b>)', 'Unknown browser'],
    [null, null],
    ['', null],
  ];
  for (const [ua, words] of cases) {
    it(`reads ${JSON.stringify(ua)} as ${JSON.stringify(words)}`, () => {
      expect(describeUserAgent(ua)).to.equal(words);
    });
  }

  it('copes with a very long user agent', () => {
    expect(describeUserAgent(`${CHROME_LINUX} ${'x'.repeat(100_000)}`)).to.equal('Chrome 156 on Linux');
  });

  it('keeps the raw user agent and address next to the readable ones', () => {
    const session = { publicId: 'p', createdAt: new Date(0), lastSeenAt: new Date(0), ip: '::ffff:127.0.0.1', userAgent: CHROME_LINUX };
    expect(sessionView(session)).to.deep.equal({ ...session, address: '127.0.0.1', browser: 'Chrome 156 on Linux' });
  });
});
