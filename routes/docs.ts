import { createRequire } from 'node:module';
import path from 'node:path';
import { Router, type Request, type Response } from 'express';
import { NotFoundError } from '../errors.js';
import { dropNoStore } from '../middleware/no-store.js';

/** The viewer's files, from the swagger-ui-dist package: only these two are served (not its demo page or initializer). */
const SWAGGER_UI_DIR = path.dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'));
const SWAGGER_UI_ASSETS: Readonly<Record<string, string>> = {
  'swagger-ui.css': path.join(SWAGGER_UI_DIR, 'swagger-ui.css'),
  'swagger-ui-bundle.js': path.join(SWAGGER_UI_DIR, 'swagger-ui-bundle.js'),
};

/**
 * `GET /docs`: the OpenAPI description (`/api/openapi.json`) as a readable
 * page, drawn by Swagger UI from files this app serves itself under
 * `/docs/assets/` (no CDN, no outside request: the page's CSP allows only
 * 'self'). Public and the same for everyone, so the assets are cacheable like
 * `/static`; the page itself is not (it follows deploys).
 */
export function docsRoutes(deps: { isProduction: boolean }): Router {
  const router = Router();
  const maxAge = deps.isProduction ? '1h' : 0;

  router.get('/docs', showDocs);
  router.get('/docs/assets/:file', dropNoStore, sendAsset);

  function showDocs(_req: Request, res: Response) {
    res.render('docs', { specUrl: '/api/openapi.json' });
  }

  function sendAsset(req: Request<{ file: string }>, res: Response) {
    const file = Object.hasOwn(SWAGGER_UI_ASSETS, req.params.file) ? SWAGGER_UI_ASSETS[req.params.file] : undefined;
    if (!file) throw new NotFoundError();
    res.sendFile(file, { maxAge });
  }

  return router;
}
