import type { Clock } from '../../clock.js';

/** A clock a test moves by hand instead of sleeping; starts at the real time (cookies still expire by it). */
export class TestClock {
  constructor(private ms = Date.now()) {}

  /** The clock to hand to `createApp` (through `startTestApp({ clock })`) or a service. */
  readonly read: Clock = () => this.ms;

  advance(ms: number): void {
    this.ms += ms;
  }
}
