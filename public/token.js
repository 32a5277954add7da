// Progressive enhancement for the token page: a copy button and a live countdown.
(function () {
  'use strict';
  var button = document.getElementById('copy-token');
  var status = document.getElementById('copy-status');
  var field = document.getElementById('token');
  if (button && field) {
    button.hidden = false;
    button.addEventListener('click', function () {
      var done = function () { status.textContent = 'Copied to the clipboard.'; };
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(field.value).then(done, function () {
          field.select();
          status.textContent = 'Press Ctrl+C (or Cmd+C) to copy.';
        });
      } else {
        field.select();
        document.execCommand('copy');
        done();
      }
    });
  }
  var left = document.getElementById('expires-in');
  if (left) {
    var at = Number(left.getAttribute('data-expires-at'));
    var tick = function () {
      var s = Math.max(0, Math.floor((at - Date.now()) / 1000));
      var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
      left.textContent = s === 0 ? 'expired' : (h ? h + ' h ' : '') + (h || m ? m + ' min ' : '') + r + ' s';
    };
    tick();
    setInterval(tick, 1000);
  }
  document.querySelectorAll('time.local-time').forEach(function (el) {
    el.textContent = new Date(el.getAttribute('datetime')).toLocaleString();
  });
})();
