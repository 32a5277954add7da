import { BadRequestError } from '../errors.js';

/**
 * Reads one text field from a parsed form body. Missing gives ''; an array
 * or object (e.g. `username[]=a`) is a 400, never coerced.
 */
export function textField(body: unknown, name: string): string {
  const value: unknown = body && typeof body === 'object' ? (body as Record<string, unknown>)[name] : undefined;
  if (value === undefined || value === null) return '';
  if (typeof value !== 'string') throw new BadRequestError(`The field ${name} must be text.`);
  return value;
}
