// Passkeys (WebAuthn) on the sign-in, second-step and account pages, with @simplewebauthn/browser
// (served from /static/vendor). Progressive enhancement: the passkey controls stay hidden where the
// browser has no WebAuthn, and every page works without this file.
(function () {
  'use strict';

  var lib = window.SimpleWebAuthnBrowser;
  if (!lib || !lib.browserSupportsWebAuthn()) return;

  /** POSTs JSON with the session's CSRF token; resolves with the status and the JSON answer. */
  function post(url, csrf, body) {
    return fetch(url, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json', 'x-csrf-token': csrf },
      body: JSON.stringify(body || {}),
    }).then(function (res) {
      return res.json().catch(function () { return {}; }).then(function (json) { return { ok: res.ok, body: json }; });
    });
  }

  /** The session's CSRF token, from any form on the page (the same for all of them). */
  function csrfToken() {
    var input = document.querySelector('input[name="_csrf"]');
    return input ? input.value : '';
  }

  function say(box, text) {
    var status = box.querySelector('[data-passkey-status]');
    if (status) status.textContent = text;
  }

  document.querySelectorAll('[data-passkey-signin]').forEach(function (box) {
    box.hidden = false;
    var csrf = csrfToken();
    box.querySelector('button').addEventListener('click', function () {
      say(box, '');
      post('/auth/passkey/options', csrf, {})
        .then(function (options) {
          if (!options.ok) throw new Error(options.body.message || 'Passkey sign-in is not available right now.');
          return lib.startAuthentication({ optionsJSON: options.body }).catch(function () {
            throw new Error('No passkey was used.');
          });
        })
        .then(function (answer) {
          return post('/auth/passkey', csrf, { response: answer, returnTo: box.getAttribute('data-return-to') || '/' });
        })
        .then(function (done) {
          if (!done.ok) throw new Error(done.body.message || 'That passkey was not accepted.');
          window.location.assign(done.body.redirect || '/');
        })
        .catch(function (err) { say(box, err.message); });
    });
  });

  document.querySelectorAll('form[data-passkey-add]').forEach(function (form) {
    form.hidden = false;
    var csrf = csrfToken();
    form.addEventListener('submit', function (event) {
      event.preventDefault();
      say(form, '');
      var name = form.querySelector('[name=name]').value;
      var password = form.querySelector('[name=currentPassword]');
      post('/account/passkeys/options', csrf, { currentPassword: password ? password.value : '' })
        .then(function (options) {
          if (!options.ok) throw new Error(options.body.message || 'A passkey cannot be added right now.');
          return lib.startRegistration({ optionsJSON: options.body }).catch(function () {
            throw new Error('No passkey was made.');
          });
        })
        .then(function (answer) { return post('/account/passkeys', csrf, { response: answer, name: name }); })
        .then(function (done) {
          if (!done.ok) throw new Error(done.body.message || 'The passkey could not be added.');
          window.location.assign(done.body.redirect || '/account');
        })
        .catch(function (err) { say(form, err.message); });
    });
  });
})();
