import type { RequestHandler } from 'express';
import * as OpenApiValidator from 'express-openapi-validator';
import type { OpenApiDocument } from '../../routes/openapi.js';

/** Every answer that did not match the description, in this test process, as one line each. */
export const contractMismatches: string[] = [];

/** One validator per document: loading and compiling it costs more than most tests, and every app's document is the same. */
const validators = new Map<string, RequestHandler[]>();

/**
 * The contract check `startTestApp` gives every test app (`createApp({
 * checkResponses })`): express-openapi-validator compares each JSON answer of
 * a described route (method, path and status) with the app's own OpenAPI
 * document. An answer that does not match becomes a 500 and is printed and
 * recorded in {@link contractMismatches} (or handed to `onMismatch`), so the
 * test that received it fails.
 * Requests are not validated (the routes' own refusals are what the tests
 * look at), and neither is security (the app does its own).
 *
 * Two limits of the library: answers sent other than with `res.json` are not
 * looked at (the routes it covers all use it), and neither are 5xx answers.
 */
export function responseContract(document: OpenApiDocument, onMismatch: (line: string) => void = report): RequestHandler[] {
  const key = onMismatch === report ? JSON.stringify(document) : undefined;
  let handlers = key === undefined ? undefined : validators.get(key);
  if (!handlers) {
    handlers = OpenApiValidator.middleware({
      apiSpec: structuredClone(document) as never,
      validateApiSpec: true,
      validateRequests: false,
      validateResponses: {
        allErrors: true,
        onError(err, body: unknown, req) {
          onMismatch(`${req.method} ${req.originalUrl} answered ${req.res?.statusCode} ${JSON.stringify(body).slice(0, 300)}, which the OpenAPI description does not allow: ${err.message}`);
          throw new Error(`response does not match the OpenAPI description: ${err.message}`);
        },
      },
      validateSecurity: false,
      ignoreUndocumented: true,
      fileUploader: false,
    }) as RequestHandler[];
    if (key !== undefined) validators.set(key, handlers);
  }
  return handlers;
}

function report(line: string): void {
  contractMismatches.push(line);
  process.stderr.write(`contract mismatch: ${line}\n`);
}
