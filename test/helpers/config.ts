import { expect } from 'chai';
import { ConfigError, loadConfig } from '../../config.js';

/**
 * The ConfigError that `loadConfig(env)` throws, or undefined when it accepts
 * `env`; anything else it throws fails the test.
 *
 * @example
 * expect(configRefusal({ ...secrets, PORT: 'abc' })?.variable).to.equal('PORT');
 */
export function configRefusal(env: Record<string, string | undefined>): ConfigError | undefined {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).to.be.instanceOf(ConfigError);
    return err as ConfigError;
  }
  return undefined;
}

/** The ConfigError thrown by loadConfig(env); fails when it does not throw one. */
export function configError(env: Record<string, string | undefined>): ConfigError {
  const err = configRefusal(env);
  if (!err) expect.fail(`loadConfig accepted ${JSON.stringify(env)}`);
  return err;
}

/** Asserts a refusal that names the variable in a single line. */
export function expectRefused(env: Record<string, string | undefined>, variable: string): ConfigError {
  const err = configError(env);
  expect(err.variable).to.equal(variable);
  expect(err.message).to.contain(variable);
  expect(err.message).not.to.contain('\n');
  return err;
}
