import path from 'node:path';

const here = import.meta.dirname;

/** The project folder, whether running from source (tsx) or from the `dist/` build. */
export const projectRoot = path.basename(here) === 'dist' ? path.dirname(here) : here;
