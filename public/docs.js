// Starts Swagger UI on /docs with the app's own OpenAPI document. Served from /static (CSP: script-src 'self');
// the bundle comes from /docs/assets. No outside request: no validator badge, no spec URL box, no CDN.
(function () {
  'use strict';

  var root = document.getElementById('swagger-ui');
  if (!root || typeof window.SwaggerUIBundle !== 'function') return;
  window.ui = window.SwaggerUIBundle({
    url: root.getAttribute('data-spec-url'),
    domNode: root,
    deepLinking: true,
    // The default sends the document to an online validator for a badge: never.
    validatorUrl: null,
    presets: [window.SwaggerUIBundle.presets.apis],
    layout: 'BaseLayout',
    defaultModelsExpandDepth: 1,
    displayRequestDuration: true,
    tryItOutEnabled: false,
  });
})();
