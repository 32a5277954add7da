// Progressive enhancement only: every page works without this file.
// Local times, focus on a failed form's summary, show-password buttons, live password rules,
// and on the token page copy buttons and a live countdown. Served from /static (CSP: script-src 'self').
(function () {
  'use strict';

  var DATE_STYLE = { dateStyle: 'medium', timeStyle: 'short' };

  function localTime(date) {
    try {
      return date.toLocaleString(undefined, DATE_STYLE);
    } catch {
      return date.toLocaleString();
    }
  }

  /** "5 h 59 min 58 s", like the server's words, to the second. */
  function countdownWords(seconds) {
    var h = Math.floor(seconds / 3600);
    var m = Math.floor((seconds % 3600) / 60);
    var s = seconds % 60;
    return (h ? h + ' h ' : '') + (h || m ? m + ' min ' : '') + s + ' s';
  }

  // Times arrive as "2026-11-25 16:00 UTC"; show them in the reader's own time zone.
  document.querySelectorAll('time[datetime]').forEach(function (el) {
    var date = new Date(el.getAttribute('datetime'));
    if (isNaN(date.getTime())) return;
    el.title = el.textContent;
    el.textContent = localTime(date);
  });

  document.querySelectorAll('.js-only').forEach(function (el) {
    el.hidden = false;
  });

  // A failed form: the summary takes focus (autofocus does this too), its links focus their field.
  var summary = document.getElementById('form-errors');
  if (summary && !summary.hidden) {
    if (document.activeElement === document.body || !document.activeElement) summary.focus();
    summary.addEventListener('click', function (event) {
      var link = event.target.closest('a[href^="#"]');
      var field = link && document.getElementById(link.getAttribute('href').slice(1));
      if (!field) return;
      event.preventDefault();
      var label = document.querySelector('label[for="' + field.id + '"]');
      (label || field).scrollIntoView({ block: 'start' });
      field.focus({ preventScroll: true });
    });
  }

  // Show/hide buttons beside password inputs.
  document.querySelectorAll('input[type="password"]').forEach(function (input) {
    var wrap = document.createElement('span');
    wrap.className = 'with-reveal';
    input.parentNode.insertBefore(wrap, input);
    wrap.appendChild(input);
    var button = document.createElement('button');
    button.type = 'button';
    button.className = 'secondary reveal';
    var render = function () {
      var shown = input.type === 'text';
      button.innerHTML = '';
      button.appendChild(document.createTextNode(shown ? 'Hide' : 'Show'));
      var hidden = document.createElement('span');
      hidden.className = 'visually-hidden';
      hidden.textContent = ' password';
      button.appendChild(hidden);
    };
    button.addEventListener('click', function () {
      input.type = input.type === 'password' ? 'text' : 'password';
      render();
    });
    render();
    wrap.appendChild(button);
    // Never submit (or let a password manager see) a revealed field as plain text.
    if (input.form) input.form.addEventListener('submit', function () { input.type = 'password'; render(); });
  });

  // Tick off the password rules that can be checked here; the server checks them all.
  document.querySelectorAll('ul.rules[data-password-field]').forEach(function (list) {
    var password = document.getElementById(list.getAttribute('data-password-field'));
    var nameField = list.getAttribute('data-username-field') && document.getElementById(list.getAttribute('data-username-field'));
    var fixedName = list.getAttribute('data-username') || '';
    if (!password) return;
    var update = function () {
      var value = password.value;
      var length = Array.from(value).length;
      var name = (nameField ? nameField.value : fixedName).trim().toLowerCase();
      list.querySelectorAll('li[data-rule]').forEach(function (rule) {
        var met = false;
        if (rule.getAttribute('data-rule') === 'length') {
          met = length >= Number(rule.getAttribute('data-min')) && length <= Number(rule.getAttribute('data-max'));
        } else if (rule.getAttribute('data-rule') === 'not-username') {
          met = value !== '' && value.toLowerCase() !== name;
        }
        rule.classList.toggle('met', met);
      });
    };
    password.addEventListener('input', update);
    if (nameField) nameField.addEventListener('input', update);
  });

  // Copy buttons: the text of their target (a field's value or an element's text).
  document.querySelectorAll('button[data-copy-target]').forEach(function (button) {
    var target = document.getElementById(button.getAttribute('data-copy-target'));
    if (!target) return;
    var status = button.parentNode.querySelector('.copy-status');
    var say = function (text, failed) {
      if (!status) return;
      status.textContent = text;
      status.classList.toggle('failed', Boolean(failed));
    };
    button.hidden = false;
    button.addEventListener('click', function () {
      var text = 'value' in target ? target.value : target.textContent;
      var fallback = function () {
        if (target.select) target.select();
        else window.getSelection().selectAllChildren(target);
        var copied;
        try {
          copied = document.execCommand('copy');
        } catch {
          copied = false;
        }
        say(copied ? 'Copied.' : 'Selected: press Ctrl+C (or ⌘C) to copy.', !copied);
      };
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(text).then(function () { say('Copied.'); }, fallback);
      } else {
        fallback();
      }
    });
  });

  // Live countdown to the token's expiry.
  var left = document.getElementById('expires-in');
  if (left) {
    var expiresAt = Number(left.getAttribute('data-expires-at'));
    var expiry = document.getElementById('expiry');
    var timer = null;
    var tick = function () {
      var seconds = Math.max(0, Math.floor((expiresAt - Date.now()) / 1000));
      if (seconds > 0) {
        left.textContent = countdownWords(seconds);
        return;
      }
      if (timer !== null) window.clearInterval(timer);
      if (expiry) {
        expiry.textContent = 'Expired at ' + localTime(new Date(expiresAt)) + '. Mint a new one.';
        expiry.classList.add('expired');
      }
    };
    tick();
    timer = window.setInterval(tick, 1000);
  }
})();
