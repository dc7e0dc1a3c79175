"""Task families of the shop app (:mod:`pivotgym.envs.browser.apps.shop`).

- ``shop.buy``: log in and order a quantity of a product with a shipping speed, to the
  account's address or a new one. Checked on the database: exactly one new order of the
  user, with exactly those items, that shipping and that address.
- ``shop.order-total``: tell the user the total of their most recent order. Checked on
  the answer: the amount, in dollars and cents.
- ``shop.cheapest`` (held out): name the cheapest product of a category. Checked on the
  answer.
"""

from __future__ import annotations

import random
import re
from typing import Any
from urllib.parse import quote

from pivotgym.envs.browser.apps.shop import CATEGORIES, HOST, SHIPPING, STREETS, Shop, populate
from pivotgym.envs.browser.apps.web import money
from pivotgym.envs.browser.families import Action, Expert, Family
from pivotgym.envs.browser.families.app import AppFamily
from pivotgym.envs.browser.families.page_text import find
from pivotgym.envs.browser.tasks import BrowserTask
from pivotgym.envs.tools.words import pick

START = f"http://{HOST}/"


def answer_matches(answer: str, expected: str) -> bool:
    """Whether ``answer`` says ``expected`` (case, spacing and punctuation aside)."""

    def norm(text: str) -> str:
        return " ".join(re.sub(r"[^a-z0-9.$ ]", " ", text.lower()).split())

    return norm(expected) in norm(answer)


class ShopFamily(AppFamily):
    site = Shop()
    populate = staticmethod(populate)


class Buy(ShopFamily):
    name = "shop.buy"
    params = ("user", "password", "product", "qty", "shipping", "address", "orders_before")

    def generate(self, seed: int, task_id: str) -> BrowserTask:
        rng = random.Random(f"{self.name}:{seed}")
        db = self.database(seed)
        user, password, home = pick(
            rng, db.execute("SELECT username, password, address FROM users ORDER BY id").fetchall()
        )
        product = pick(
            rng, [r[0] for r in db.execute("SELECT name FROM products WHERE stock > 0 ORDER BY id")]
        )
        qty, shipping = rng.randint(1, 4), pick(rng, tuple(SHIPPING))
        address = (
            home
            if rng.random() < 0.5
            else f"{rng.randrange(1, 999)} {pick(rng, STREETS)}, Northfield"
        )
        where = "to their usual address" if address == home else f"to {address}"
        goal = (
            f"Log in to the shop as {user} (password: {password}) and order {qty} of the "
            f'"{product}" with {shipping} shipping, {where}.'
        )
        before = db.execute("SELECT COUNT(*) FROM orders").fetchone()[0]
        params = {
            "user": user,
            "password": password,
            "product": product,
            "qty": qty,
            "shipping": shipping,
            "address": address,
            "orders_before": before,
        }
        return BrowserTask(task_id, self.name, seed, goal, params, 20)

    async def check(self, task: BrowserTask, world: Any) -> tuple[float, dict[str, Any]]:
        p = task.params
        db = world.databases[HOST]
        orders = db.execute(
            "SELECT o.id, u.username, o.shipping, o.address FROM orders o JOIN users "
            "u ON u.id = o.user_id WHERE o.id > ? ORDER BY o.id",
            (p["orders_before"],),
        ).fetchall()
        if len(orders) != 1:
            return 0.0, {"reason": f"{len(orders)} new orders, not 1"}
        order_id, user, shipping, address = orders[0]
        items = dict(
            db.execute(
                "SELECT p.name, i.qty FROM order_items i JOIN products p ON "
                "p.id = i.product_id WHERE i.order_id = ?",
                (order_id,),
            )
        )
        wrong = [
            what
            for what, ok in (
                ("user", user == p["user"]),
                ("items", items == {p["product"]: p["qty"]}),
                ("shipping", shipping == p["shipping"]),
                ("address", address.lower() == p["address"].lower()),
            )
            if not ok
        ]
        reason = f"order #{order_id}: wrong {', '.join(wrong)}" if wrong else f"order #{order_id}"
        return float(not wrong), {"reason": reason, "order": order_id}

    def expert(self, task: BrowserTask, seed: int) -> Expert:
        return BuyExpert(task, random.Random(seed))


class BuyExpert(Expert):
    """Finds the product by search or by its category (sorted or not), logs in first or
    when asked, sets the quantity on the product page or in the cart, and checks out
    with the address and the shipping in either order."""

    def __init__(self, task: BrowserTask, rng: random.Random) -> None:
        super().__init__(task, rng)
        self.route = pick(rng, ("search", "browse", "browse-sorted"))
        self.login_first = rng.random() < 0.5
        self.qty_in_cart = task.params["qty"] > 1 and rng.random() < 0.3
        self.address_first = rng.random() < 0.5
        self.added = self.updated = False
        self.filled: set[str] = set()

    def act(self, goal: str, page: str, url: str) -> Action | None:
        p = self.task.params
        path = url.removeprefix(START.rstrip("/"))
        logged_in = "Logged in as" in page
        if path.startswith("/login"):
            return self._log_in(page)
        if path.startswith("/orders/"):
            number = re.search(r"Order #(\d+)", page)
            return "send_msg_to_user", {"text": f"Order #{number[1] if number else '?'} is placed."}
        if self.login_first and not logged_in:
            return "click", {"bid": find(page, "link", "Log in").bid}
        if path == "/checkout":
            return self._checkout(page)
        if path == "/cart" and self.added:
            if self.qty_in_cart and not self.updated:
                box = find(page, "textbox", f"Quantity of {p['product']}")
                if box.value != str(p["qty"]):
                    return "fill", {"bid": box.bid, "value": str(p["qty"])}
                self.updated = True
                return "click", {"bid": _button_after(page, box.bid, "Update")}
            return "click", {"bid": find(page, "link", "Proceed to checkout").bid}
        if path.startswith("/product/") and f"'{p['product']}'" in page:
            quantity = find(page, "combobox", "Quantity")
            want = "1" if self.qty_in_cart else str(p["qty"])
            if quantity.value != want:
                return "select_option", {"bid": quantity.bid, "options": want}
            self.added = True
            return "click", {"bid": find(page, "button", "Add to cart").bid}
        return self._find_product(page, path)

    def _find_product(self, page: str, path: str) -> Action:
        p = self.task.params
        try:
            return "click", {"bid": find(page, "link", p["product"]).bid}
        except LookupError:
            pass
        if self.route == "search":
            box = find(page, "textbox", "Search products")
            if box.value != p["product"]:
                return "fill", {"bid": box.bid, "value": p["product"]}
            return "click", {"bid": find(page, "button", "Search").bid}
        category = next(c for c, items in CATEGORIES.items() if p["product"].endswith(items))
        if path == f"/category/{quote(category)}" and self.route == "browse-sorted":
            return "click", {"bid": find(page, "link", "price").bid}
        try:
            return "click", {"bid": find(page, "link", category).bid}
        except LookupError:
            return "click", {"bid": find(page, "link", "Home").bid}

    def _log_in(self, page: str) -> Action:
        p = self.task.params
        fields = [("Username", p["user"]), ("Password", p["password"])]
        if self.rng.random() < 0.5:
            fields.reverse()
        for label, value in fields:
            if label not in self.filled:
                self.filled.add(label)
                return "fill", {"bid": find(page, "textbox", label).bid, "value": value}
        self.filled -= {"Username", "Password"}
        return "click", {"bid": find(page, "button", "Log in").bid}

    def _checkout(self, page: str) -> Action:
        p = self.task.params
        address = find(page, "textbox", "Address")
        shipping = find(page, "combobox", "Shipping")
        steps: list[Action] = []
        if address.value.lower() != p["address"].lower():
            steps.append(("fill", {"bid": address.bid, "value": p["address"]}))
        if not shipping.value.startswith(p["shipping"]):
            label = f"{p['shipping']} ({money(SHIPPING[p['shipping']])})"
            steps.append(("select_option", {"bid": shipping.bid, "options": label}))
        if steps:
            return steps[0] if self.address_first else steps[-1]
        return "click", {"bid": find(page, "button", "Place order").bid}


def _button_after(page: str, bid: str, name: str) -> str:
    """The bid of the first button called ``name`` after element ``bid`` in the page."""
    seen = False
    for line in page.splitlines():
        if f"[{bid}]" in line:
            seen = True
        elif seen and f" button '{name}'" in line:
            return line.split("[", 1)[1].split("]", 1)[0]
    raise LookupError(f"no button {name!r} after [{bid}]")


class OrderTotal(ShopFamily):
    name = "shop.order-total"
    params = ("user", "password", "order", "total")

    def generate(self, seed: int, task_id: str) -> BrowserTask:
        rng = random.Random(f"{self.name}:{seed}")
        db = self.database(seed)
        user_id, user, password = pick(
            rng, db.execute("SELECT id, username, password FROM users ORDER BY id").fetchall()
        )
        order, total = db.execute(
            "SELECT id, total_cents FROM orders WHERE user_id = ? ORDER BY id DESC LIMIT 1",
            (user_id,),
        ).fetchone()
        goal = (
            f"I am {user} (password: {password}). What was the total of my most recent "
            "order in the shop? Tell me the amount."
        )
        params = {"user": user, "password": password, "order": order, "total": money(total)}
        return BrowserTask(task_id, self.name, seed, goal, params, 12)

    async def check(self, task: BrowserTask, world: Any) -> tuple[float, dict[str, Any]]:
        answer = self.answer(world)
        total = task.params["total"]
        ok = answer_matches(answer, total) or answer_matches(answer, total.lstrip("$"))
        return float(ok), {"reason": f"answered {answer[:80]!r}, the total is {total}"}

    def expert(self, task: BrowserTask, seed: int) -> Expert:
        return OrderTotalExpert(task, random.Random(seed))


class OrderTotalExpert(Expert):
    """Logs in (from the home page's link or by opening the orders first), opens the
    newest order or reads its total from the list, and answers."""

    def __init__(self, task: BrowserTask, rng: random.Random) -> None:
        super().__init__(task, rng)
        self.open_order = rng.random() < 0.5
        self.via_orders = rng.random() < 0.5
        self.filled: set[str] = set()

    def act(self, goal: str, page: str, url: str) -> Action | None:
        p = self.task.params
        path = url.removeprefix(START.rstrip("/"))
        if path.startswith("/login"):
            for label, value in (("Username", p["user"]), ("Password", p["password"])):
                if label not in self.filled:
                    self.filled.add(label)
                    return "fill", {"bid": find(page, "textbox", label).bid, "value": value}
            return "click", {"bid": find(page, "button", "Log in").bid}
        if path.startswith("/orders/"):
            total = re.search(r"Total: (\$\d+\.\d\d)", page)
            return "send_msg_to_user", {"text": f"The total was {total[1] if total else '?'}."}
        if path == "/orders":
            if self.open_order:
                return "click", {"bid": find(page, "link", f"#{p['order']}").bid}
            row = page.split(f"'#{p['order']}'", 1)[1]
            total = re.search(r"\$\d+\.\d\d", row)
            return "send_msg_to_user", {
                "text": f"Your last order came to {total[0] if total else '?'}."
            }
        if "Logged in as" in page or self.via_orders:
            return "click", {"bid": find(page, "link", "Orders").bid}
        return "click", {"bid": find(page, "link", "Log in").bid}


class Cheapest(ShopFamily):
    name = "shop.cheapest"
    held_out = True
    params = ("category", "product")

    def generate(self, seed: int, task_id: str) -> BrowserTask:
        rng = random.Random(f"{self.name}:{seed}")
        db = self.database(seed)
        category = pick(rng, tuple(CATEGORIES))
        product = db.execute(
            "SELECT name FROM products WHERE category = ? ORDER BY price_cents, name LIMIT 1",
            (category,),
        ).fetchone()[0]
        goal = f"Which product in the shop's {category} category is the cheapest? Tell me its name."
        return BrowserTask(
            task_id, self.name, seed, goal, {"category": category, "product": product}, 10
        )

    async def check(self, task: BrowserTask, world: Any) -> tuple[float, dict[str, Any]]:
        answer = self.answer(world)
        ok = answer_matches(answer, task.params["product"])
        return float(ok), {"reason": f"answered {answer[:80]!r}, it is {task.params['product']}"}


FAMILIES: list[Family] = [Buy(), OrderTotal(), Cheapest()]
