/**
 * The time in epoch milliseconds. One clock is created by `server.ts` (the
 * system's) or by a test (one it can move) and handed through `createApp` to
 * every service, the session store and the pages, so nothing reads the time
 * on its own.
 */
export type Clock = () => number;

export const systemClock: Clock = () => Date.now();
