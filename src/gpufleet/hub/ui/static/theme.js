// Before first paint (a classic script in <head>), so a dark-theme user never sees a white flash.
(function () {
  var t = localStorage.getItem("gpufleet-theme");
  if (!t) t = matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
  document.documentElement.dataset.theme = t;
})();
