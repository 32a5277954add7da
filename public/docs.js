// Starts Swagger UI on /docs with the app's own OpenAPI document. Served from /static (CSP: script-src 'self');
// the bundle comes from /docs/assets. No outside request: no validator badge, no spec URL box, no CDN.
// The viewer's markup is made to pass axe (test/browser/docs.test.ts) by a plugin where Swagger UI's
// components allow it, and by a pass over the drawn markup for what no component option reaches.
(function () {
  'use strict';

  var root = document.getElementById('swagger-ui');
  if (!root || typeof window.SwaggerUIBundle !== 'function') return;

  /** Swagger UI plugin: wraps some of the viewer's components (its wrapComponents API). */
  function accessibleComponents() {
    return {
      wrapComponents: {
        // An operation's path is drawn as a deep link (<a href>) inside the summary row's toggle button:
        // a control inside a control (nested-interactive). Drawn as text instead; the address bar still
        // follows the open operation (deepLinking), so its link is there to copy.
        OperationSummaryPath: function (Original, system) {
          return function OperationSummaryPathText(props) {
            var operationProps = props.operationProps.set('isDeepLinkingEnabled', false);
            return system.React.createElement(Original, Object.assign({}, props, { operationProps: operationProps }));
          };
        },
        // The examples drop-down has no label (select-name). A <label> around it names it: by the
        // visible "Examples:" that showLabels draws inside, or, where a response draws its own
        // "Examples" title beside it instead (showLabels false), by the same word for screen readers.
        ExamplesSelect: function (Original, system) {
          return function LabelledExamplesSelect(props) {
            var h = system.React.createElement;
            var hiddenName = props.showLabels === false ? h('span', { className: 'visually-hidden' }, 'Examples') : null;
            return h('label', { className: 'examples-select-label' }, hiddenName, h(Original, props));
          };
        },
        // The title and description sit outside any landmark (region): a named section makes them one.
        InfoContainer: function (Original, system) {
          return function InfoRegion(props) {
            var h = system.React.createElement;
            return h('section', { 'aria-label': 'About the API' }, h(Original, props));
          };
        },
        // The Authorize pop-up is a plain <div>: made a named, modal dialog that takes the focus when it
        // opens (from the last form's autofocus field, scrolled back to the first form, so reading
        // starts at its title) and gives it back to what had it (an Authorize or lock button) when it
        // closes. Escape closes it (Swagger UI's own). The wrapper covers the viewport like the pop-up
        // (docs.css), so nothing moves on screen.
        authorizationPopup: function (Original, system) {
          return function AuthorizationDialog(props) {
            var React = system.React;
            var dialog = React.useRef(null);
            // Read while the pop-up is first drawn, before its fields' autofocus moves the focus.
            var opener = React.useState(function () {
              return document.activeElement;
            })[0];
            React.useEffect(function () {
              var content = dialog.current.querySelector('.modal-ux-content');
              if (content) content.scrollTop = 0;
              dialog.current.focus();
              return function () {
                if (opener && opener.isConnected) opener.focus();
              };
            }, [opener]);
            var attributes = { ref: dialog, role: 'dialog', 'aria-modal': 'true', 'aria-label': 'Available authorizations', tabIndex: -1, className: 'docs-dialog' };
            return React.createElement('div', attributes, React.createElement(Original, props));
          };
        },
        // The pop-up's buttons carry names that are not their words ("Apply credentials" on
        // "Authorize", "Remove authorization" on "Logout": label-content-name-mismatch), so someone
        // saying what they see cannot press them. Such a name is dropped: the words are the name.
        Button: function (Original, system) {
          return function ButtonNamedByItsText(props) {
            var label = props['aria-label'];
            var text = typeof props.children === 'string' ? props.children : null;
            if (!label || !text || label.toLowerCase().indexOf(text.toLowerCase()) !== -1) return system.React.createElement(Original, props);
            return system.React.createElement(Original, Object.assign({}, props, { 'aria-label': undefined }));
          };
        },
      },
    };
  }

  /**
   * Sets what no component option reaches on the markup Swagger UI has drawn. Only attributes React
   * does not manage, so a re-render keeps them; elements drawn later get them on the next pass.
   */
  function fixDrawnMarkup() {
    // The viewer's headings jump from its title (h1) to the tags (h3), and in the pop-up from h4 to
    // h6 (heading-order): each is read one level up, never more than one below the one before, and the
    // Schemas section, drawn as h4, beside the tags.
    var previous = 1;
    root.querySelectorAll('h1, h2, h3, h4, h5, h6').forEach(function (heading) {
      var drawn = Number(heading.tagName.charAt(1));
      var level = drawn;
      if (drawn >= 3) {
        level = Math.min(heading.matches('.models > h4') ? 2 : drawn - 1, previous + 1);
        heading.setAttribute('aria-level', String(level));
      }
      previous = level;
    });
    // Each operation's responses table is a live region without a name (landmark-unique).
    root.querySelectorAll('.opblock table.responses-table[role="region"]').forEach(function (table) {
      var summary = table.closest('.opblock').querySelector('.opblock-summary');
      var method = summary && summary.querySelector('.opblock-summary-method');
      var path = summary && summary.querySelector('.opblock-summary-path');
      if (method && path) table.setAttribute('aria-label', 'Responses of ' + method.textContent + ' ' + path.getAttribute('data-path'));
    });
    // The pop-up's close button is an icon without a name (button-name).
    root.querySelectorAll('.close-modal:not([aria-label])').forEach(function (button) {
      button.setAttribute('aria-label', 'Close');
    });
    // A code box longer than the stylesheet's 400px, or wider than a phone, scrolls: it has to take
    // focus to be scrolled from the keyboard (scrollable-region-focusable). Boxes that fit do not.
    root.querySelectorAll('.highlight-code > pre').forEach(function (pre) {
      if (pre.scrollHeight > pre.clientHeight || pre.scrollWidth > pre.clientWidth) pre.setAttribute('tabindex', '0');
      else pre.removeAttribute('tabindex');
    });
  }

  var scheduled = false;
  function scheduleFix() {
    if (scheduled) return;
    scheduled = true;
    window.requestAnimationFrame(function () {
      scheduled = false;
      fixDrawnMarkup();
    });
  }
  new window.MutationObserver(scheduleFix).observe(root, { childList: true, subtree: true, characterData: true });
  window.addEventListener('resize', scheduleFix);

  window.ui = window.SwaggerUIBundle({
    url: root.getAttribute('data-spec-url'),
    domNode: root,
    deepLinking: true,
    // The default sends the document to an online validator for a badge: never.
    validatorUrl: null,
    presets: [window.SwaggerUIBundle.presets.apis],
    plugins: [accessibleComponents],
    layout: 'BaseLayout',
    defaultModelsExpandDepth: 1,
    displayRequestDuration: true,
    tryItOutEnabled: false,
    // A built-in colour theme for code whose colours reach 4.5:1 on its background for what this
    // document shows (JSON, the curl line); the default, agate, draws numbers at 3.45:1. Its red for
    // shell variables and XML tags is 4.46:1, used by neither. Inline styles, so a theme and not CSS.
    syntaxHighlight: { activated: true, theme: 'tomorrow-night' },
  });
})();
