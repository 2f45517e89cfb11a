"use strict";
// "You are the scheduler": two requests run the racy method's bytecode, one instruction at
// a time, in the order the student picks. The analysis stored each instruction's effect and
// every sentence shown (results.json: interleaving.stepper); this script only applies the
// effects to the two threads' values and to self.param, and prints the stored sentences
// with the values of the moment. It writes text only (textContent), never markup.
(function () {
  function fill(template, values) {
    return String(template).replace(/\{(\w+)\}/g, function (whole, key) {
      return Object.prototype.hasOwnProperty.call(values, key) ? String(values[key]) : whole;
    });
  }

  function Stepper(root) {
    var data = JSON.parse(root.getAttribute("data-stepper"));
    var words = data.words;
    var program = data.program;
    var threads = [0, 1].map(function (i) {
      var box = root.querySelector('[data-thread="' + i + '"]');
      return {
        name: data.threads[i],
        box: box,
        local: box.querySelector("[data-local]"),
        returned: box.querySelector("[data-returned]"),
        button: box.querySelector("[data-step]"),
        rows: box.querySelectorAll("[data-pc]"),
      };
    });
    var shared = root.querySelector("[data-shared]");
    var message = root.querySelector("[data-message]");
    var log = root.querySelector("[data-log]");
    var lost = root.querySelector("[data-lost]");
    var lostText = root.querySelector("[data-lost-text]");
    var replayButton = root.querySelector("[data-replay]");
    var resetButton = root.querySelector("[data-reset]");
    var state = null;
    var timer = null;

    function say(text) {
      message.textContent = text;
      var item = document.createElement("li");
      item.textContent = text;
      log.appendChild(item);
      log.scrollTop = log.scrollHeight;
    }

    function show() {
      shared.textContent = String(state.shared);
      threads.forEach(function (t, i) {
        var s = state.threads[i];
        t.local.textContent = s.local === null ? "-" : String(s.local);
        t.returned.textContent = s.returned === null ? "-" : String(s.returned);
        t.button.disabled = s.pc >= program.length || state.replaying;
        for (var k = 0; k < t.rows.length; k++) {
          t.rows[k].classList.toggle("st-next", k === s.pc);
          t.rows[k].classList.toggle("st-ran", k < s.pc);
        }
      });
      root.setAttribute("data-state", state.replaying ? "replaying"
        : state.lost ? "lost" : state.done ? "done" : "running");
      lost.hidden = !state.lost;
    }

    function reset() {
      if (timer !== null) { clearInterval(timer); timer = null; }
      state = {
        shared: data.start, lost: false, done: false, replaying: false,
        threads: [0, 1].map(function () {
          return { pc: 0, local: null, read: null, got: null, returned: null };
        }),
      };
      log.textContent = "";
      lostText.textContent = "";
      say(words.start);
      show();
    }

    function finish() {
      var a = state.threads[0], b = state.threads[1];
      if (a.pc < program.length || b.pc < program.length) { return; }
      state.done = true;
      if (a.returned === b.returned) {
        say(fill(state.lost ? words.same : words.same_no_lost, { value: a.returned }));
      } else {
        say(fill(words.done, { value: state.shared }));
      }
    }

    function step(i) {
      var s = state.threads[i];
      var who = threads[i].name;
      if (s.pc >= program.length) { say(fill(words.finished, { who: who })); return; }
      var ins = program[s.pc];
      s.pc += 1;
      switch (ins.effect) {
        case "read":
          s.local = state.shared; s.read = state.shared;
          say(fill(words.read, { who: who, value: s.local }));
          break;
        case "call":
          say(fill(words.call, { who: who }));
          break;
        case "add":
          s.local += 1;
          say(fill(words.add, { who: who, value: s.local }));
          break;
        case "write":
          if (state.shared !== s.read) {
            var text = fill(words.lost, { who: who, value: s.local, old: state.shared });
            state.lost = true;
            lostText.textContent = text;
            say(text);
          } else {
            say(fill(words.write, { who: who, value: s.local }));
          }
          state.shared = s.local;
          break;
        case "reread":
          s.got = state.shared;
          say(fill(words.reread, { who: who, value: s.got }));
          break;
        case "return":
          s.returned = s.got === null ? s.local : s.got;
          say(fill(words["return"], { who: who, value: s.returned }));
          break;
        default:
          say(fill(words.other, { who: who, instruction: ins.text }));
      }
      finish();
      show();
    }

    function replay() {
      if (!data.replay.length) { return; }
      reset();
      state.replaying = true;
      show();
      var at = 0;
      timer = setInterval(function () {
        if (at >= data.replay.length) {
          clearInterval(timer); timer = null;
          state.replaying = false;
          show();
          return;
        }
        step(data.replay[at]);
        at += 1;
      }, 300);
    }

    threads.forEach(function (t, i) {
      t.button.addEventListener("click", function () { step(i); });
    });
    replayButton.addEventListener("click", replay);
    resetButton.addEventListener("click", reset);
    root.addEventListener("keydown", function (event) {
      if (event.altKey || event.ctrlKey || event.metaKey) { return; }
      var key = event.key;
      if ((key === "1" || key === "2") && !state.replaying) {
        step(Number(key) - 1);
      } else if (key === "r" || key === "R") {
        replay();
      } else if (key === "0" || key === "Escape") {
        reset();
      } else {
        return;
      }
      event.preventDefault();
    });
    reset();
  }

  var roots = document.querySelectorAll("[data-stepper]");
  for (var i = 0; i < roots.length; i++) { Stepper(roots[i]); }
}());
