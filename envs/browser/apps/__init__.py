"""The web apps the browser env serves, each a :class:`~pivotgym.envs.browser.sites.Site`
with a database built from a seed."""
