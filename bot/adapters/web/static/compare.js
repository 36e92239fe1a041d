// The compare view of one chat result, opened through its signed link: drag (or arrow keys) to
// move the line between the original and the restyled picture.
"use strict";

(() => {
  const compare = document.getElementById("compare");
  const range = document.getElementById("compare-range");
  const after = document.getElementById("compare-after");

  function setCompare(value) {
    range.value = String(value);
    compare.style.setProperty("--pos", `${value}%`);
    // The words come with the page, in the reader's language ("{percent}% restyled").
    const words = range.dataset.valuetext || "{percent}% restyled";
    range.setAttribute("aria-valuetext", words.replace("{percent}", String(100 - value)));
  }

  function fitTo(img) {
    if (!img.naturalWidth || !img.naturalHeight) return;
    compare.style.setProperty("--ratio", `${img.naturalWidth} / ${img.naturalHeight}`);
    compare.style.setProperty("--ratio-num", String(img.naturalWidth / img.naturalHeight));
  }

  range.addEventListener("input", (e) => setCompare(Number(e.target.value)));
  if (after.complete) fitTo(after);
  else after.addEventListener("load", () => fitTo(after));
  setCompare(50);
})();
