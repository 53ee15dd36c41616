// Pages without their own script (errors, login) say they are ready the same way the others do.
document.body.dataset.ready = "1";
