"""Shop: a web store with accounts, a catalogue, carts, checkout and orders (``shop.test``).

Pages: the home page (categories, a search form, the products a visitor viewed last,
kept in the browser's local storage), search results, a category, a product (quantity
and "Add to cart"), the cart (change a quantity, remove), checkout (address, shipping
speed, "Place order"), the orders and each order, and log in / log out. Adding to the
cart, checking out and viewing orders need a login; a visitor is sent to log in and
then back. Form posts redirect (post/redirect/get), and the database is only read on a
``GET``.

:func:`populate` fills the database from a seed: six categories of ten products each
(names, prices, stock), a handful of customers with their passwords and addresses, and
a few past orders for each.
"""

from __future__ import annotations

import random
import sqlite3
from urllib.parse import quote, unquote

from pivotgym.envs.browser.apps.web import (
    SHARED_SCHEMA,
    check_login,
    current_user,
    esc,
    log_out,
    login_page,
    money,
    not_found,
    page,
    table,
    tick,
)
from pivotgym.envs.browser.sites import Request, Response, Site
from pivotgym.envs.tools.words import FIRST_NAMES, LAST_NAMES, pick

HOST = "shop.test"
SHIPPING = {"standard": 499, "express": 1499}
CATEGORIES = {
    "Kitchen": (
        "Mug",
        "Kettle",
        "Teapot",
        "Skillet",
        "Colander",
        "Whisk",
        "Ladle",
        "Cutting Board",
    ),
    "Garden": ("Trowel", "Watering Can", "Planter", "Hose", "Rake", "Pruner", "Seed Tray"),
    "Office": ("Notebook", "Desk Lamp", "Stapler", "Pen Set", "Monitor Stand", "Folder"),
    "Outdoors": ("Tent", "Backpack", "Lantern", "Water Bottle", "Camp Stool", "Compass"),
    "Bath": ("Towel", "Soap Dish", "Bath Mat", "Shower Caddy", "Toothbrush Holder"),
    "Toys": ("Kite", "Puzzle", "Yo-Yo", "Building Set", "Plush Bear", "Spinning Top"),
}
ADJECTIVES = (
    "Blue",
    "Red",
    "Green",
    "Compact",
    "Deluxe",
    "Classic",
    "Bamboo",
    "Steel",
    "Ceramic",
    "Travel",
    "Large",
    "Small",
    "Walnut",
    "Copper",
    "Striped",
)
STREETS = ("Oak Street", "Maple Avenue", "Harbor Road", "Hill Lane", "Mill Court", "Park Way")
CITIES = ("Springfield", "Riverton", "Lakeside", "Fairview", "Brookfield", "Greenville")

SCHEMA = (
    SHARED_SCHEMA
    + """
CREATE TABLE users (id INTEGER PRIMARY KEY, username TEXT UNIQUE NOT NULL,
    password TEXT NOT NULL, name TEXT NOT NULL, address TEXT NOT NULL);
CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL,
    category TEXT NOT NULL, price_cents INTEGER NOT NULL, stock INTEGER NOT NULL,
    description TEXT NOT NULL);
CREATE TABLE cart_items (user_id INTEGER NOT NULL, product_id INTEGER NOT NULL,
    qty INTEGER NOT NULL, PRIMARY KEY (user_id, product_id));
CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, address TEXT NOT NULL,
    shipping TEXT NOT NULL, total_cents INTEGER NOT NULL, placed_at TEXT NOT NULL);
CREATE TABLE order_items (order_id INTEGER NOT NULL, product_id INTEGER NOT NULL,
    qty INTEGER NOT NULL, price_cents INTEGER NOT NULL);
"""
)
# The home page lists what this browser viewed last, from its local storage.
_RECENT = """
const key = 'recently-viewed';
const seen = JSON.parse(localStorage.getItem(key) || '[]');
const here = document.getElementById('recent');
if (here) here.textContent = seen.length ? 'Recently viewed: ' + seen.join(', ') : '';
const viewing = document.body.dataset.product;
if (viewing) {
  const recent = [viewing, ...seen.filter((n) => n !== viewing)].slice(0, 3);
  localStorage.setItem(key, JSON.stringify(recent));
}
"""


def populate(db: sqlite3.Connection, seed: int) -> None:
    rng = random.Random(f"shop:{seed}")
    product_id = 0
    for category, items in CATEGORIES.items():
        names: set[str] = set()
        while len(names) < 10:
            names.add(f"{pick(rng, ADJECTIVES)} {pick(rng, items)}")
        for name in sorted(names):
            product_id += 1
            price = rng.randrange(3, 120) * 100 + pick(rng, (0, 49, 95, 99))
            description = f"A {name.lower()} for the {category.lower()}, sold by the piece."
            db.execute(
                "INSERT INTO products VALUES (?, ?, ?, ?, ?, ?)",
                (product_id, name, category, price, rng.randrange(0, 40), description),
            )
    users = set()
    while len(users) < 6:
        users.add((pick(rng, FIRST_NAMES), pick(rng, LAST_NAMES)))
    for user_id, (first, last) in enumerate(sorted(users), start=1):
        address = f"{rng.randrange(1, 999)} {pick(rng, STREETS)}, {pick(rng, CITIES)}"
        password = f"{first.lower()}-{rng.randrange(1000, 9999)}"
        db.execute(
            "INSERT INTO users VALUES (?, ?, ?, ?, ?)",
            (user_id, f"{first.lower()}{last[0].lower()}", password, f"{first} {last}", address),
        )
        for _ in range(rng.randrange(1, 4)):
            lines = [
                (rng.randrange(1, product_id + 1), rng.randrange(1, 4))
                for _ in range(rng.randrange(1, 4))
            ]
            place_order(db, user_id, address, pick(rng, tuple(SHIPPING)), dict(lines))


def place_order(
    db: sqlite3.Connection, user_id: int, address: str, shipping: str, lines: dict[int, int]
) -> int:
    """Record an order of ``lines`` (product id to quantity) at today's prices; its id."""
    prices = {
        pid: db.execute("SELECT price_cents FROM products WHERE id = ?", (pid,)).fetchone()[0]
        for pid in lines
    }
    total = sum(prices[p] * q for p, q in lines.items()) + SHIPPING[shipping]
    cursor = db.execute(
        "INSERT INTO orders (user_id, address, shipping, total_cents, placed_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (user_id, address, shipping, total, tick(db)),
    )
    order_id = cursor.lastrowid
    assert order_id is not None
    for pid, qty in sorted(lines.items()):
        db.execute("INSERT INTO order_items VALUES (?, ?, ?, ?)", (order_id, pid, qty, prices[pid]))
    return order_id


class Shop(Site):
    host = HOST
    schema = SCHEMA

    def handle(self, request: Request, db: sqlite3.Connection | None) -> Response:
        assert db is not None
        user_id = current_user(db, request)
        user = db.execute("SELECT username FROM users WHERE id = ?", (user_id,)).fetchone()
        layout = {
            "site": "Shop",
            "user": user[0] if user else None,
            "nav": [("Home", "/"), ("Cart", "/cart"), ("Orders", "/orders")],
        }
        path, method = request.path, request.method
        try:
            if method == "POST":
                return self._post(db, request, path, user_id)
            return self._get(db, request, path, user_id, layout)
        finally:
            db.commit()

    # ------------------------------------------------------------------- reading

    def _get(
        self, db: sqlite3.Connection, request: Request, path: str, user_id: int | None, layout: dict
    ) -> Response:
        parts = path.strip("/").split("/")
        if path == "/":
            links = "".join(
                f'<li><a href="/category/{quote(c)}">{esc(c)}</a></li>' for c in CATEGORIES
            )
            body = (
                f"{_search_form(request.query.get('q', ''))}<h2>Categories</h2><ul>{links}</ul>"
                '<p id="recent"></p>'
            )
            return page("Welcome", body, script=_RECENT, **layout)
        if path == "/login":
            return login_page(request, layout)
        if path == "/search":
            q = request.query.get("q", "").strip()
            rows = (
                db.execute(
                    "SELECT id, name, price_cents FROM products WHERE name LIKE ? ORDER BY name",
                    (f"%{q}%",),
                ).fetchall()
                if q
                else []
            )
            body = _search_form(q) + (
                _product_list(rows) if rows else f"<p>No products match {esc(q)!s}.</p>"
            )
            return page(f"Search: {q}", body, **layout)
        if parts[0] == "category" and len(parts) == 2:
            category = unquote(parts[1])
            if category not in CATEGORIES:
                return not_found(f"The category {category}", **layout)
            sort = request.query.get("sort", "name")
            order = {"name": "name", "price": "price_cents, name"}.get(sort, "name")
            rows = db.execute(
                f"SELECT id, name, price_cents FROM products WHERE category = ? ORDER BY {order}",
                (category,),
            ).fetchall()
            sorter = (
                f'<p>Sort by: <a href="/category/{quote(category)}?sort=name">name</a> | '
                f'<a href="/category/{quote(category)}?sort=price">price</a></p>'
            )
            return page(category, sorter + _product_list(rows), **layout)
        if parts[0] == "product" and len(parts) == 2 and parts[1].isdigit():
            row = db.execute(
                "SELECT id, name, category, price_cents, stock, description FROM "
                "products WHERE id = ?",
                (int(parts[1]),),
            ).fetchone()
            if row is None:
                return not_found(f"Product {parts[1]}", **layout)
            pid, name, category, price, stock, description = row
            options = "".join(f"<option>{n}</option>" for n in range(1, 6))
            buy = (
                f'<form method="post" action="/cart/add"><input type="hidden" name="product_id" '
                f'value="{pid}"><label for="qty">Quantity</label> <select id="qty" name="qty">'
                f'{options}</select> <button type="submit">Add to cart</button></form>'
                if stock
                else "<p>Out of stock.</p>"
            )
            body = (
                f"<p>{esc(description)}</p><p>Price: {money(price)}</p><p>In stock: {stock}</p>"
                f'<p>Category: <a href="/category/{quote(category)}">{esc(category)}</a></p>{buy}'
            )
            answer = page(name, body, script=_RECENT, **layout)
            html = str(answer.body).replace("<body>", f'<body data-product="{esc(name)}">', 1)
            return Response(200, html)
        if user_id is None and parts[0] in ("cart", "checkout", "orders"):
            return Response.redirect(f"/login?next={quote(path)}")
        if path == "/cart":
            return self._cart_page(db, user_id, layout)
        if path == "/checkout":
            address = db.execute("SELECT address FROM users WHERE id = ?", (user_id,)).fetchone()[0]
            total = self._cart_total(db, user_id)
            if not total:
                return page("Checkout", "<p>Your cart is empty.</p>", **layout)
            speeds = "".join(
                f'<option value="{s}">{s} ({money(c)})</option>' for s, c in SHIPPING.items()
            )
            body = (
                f"<p>Items: {money(total)}</p><form method='post' action='/checkout'>"
                f"<label for='address'>Address</label> <input id='address' name='address' "
                f"value='{esc(address)}' size='40'><br><label for='shipping'>Shipping</label> "
                f"<select id='shipping' name='shipping'>{speeds}</select><br>"
                "<button type='submit'>Place order</button></form>"
            )
            return page("Checkout", body, **layout)
        if path == "/orders":
            rows = db.execute(
                "SELECT id, placed_at, total_cents FROM orders WHERE user_id = ? ORDER BY id DESC",
                (user_id,),
            ).fetchall()
            body = (
                table(
                    ["Order", "Placed", "Total"],
                    [[f'<a href="/orders/{o}">#{o}</a>', esc(at), money(t)] for o, at, t in rows],
                )
                if rows
                else "<p>No orders yet.</p>"
            )
            return page("Your orders", body, **layout)
        if parts[0] == "orders" and len(parts) == 2 and parts[1].isdigit():
            order = db.execute(
                "SELECT id, address, shipping, total_cents, placed_at FROM orders "
                "WHERE id = ? AND user_id = ?",
                (int(parts[1]), user_id),
            ).fetchone()
            if order is None:
                return not_found(f"Order #{parts[1]}", **layout)
            items = db.execute(
                "SELECT p.name, i.qty, i.price_cents FROM order_items i JOIN products "
                "p ON p.id = i.product_id WHERE i.order_id = ? ORDER BY p.name",
                (order[0],),
            ).fetchall()
            body = (
                table(
                    ["Product", "Quantity", "Price"],
                    [[esc(n), str(q), money(p)] for n, q, p in items],
                )
                + f"<p>Shipping: {esc(order[2])}</p><p>Ship to: {esc(order[1])}</p>"
                f"<p>Placed: {esc(order[4])}</p><p>Total: {money(order[3])}</p>"
            )
            return page(f"Order #{order[0]}", body, **layout)
        return not_found(f"The page {path}", **layout)

    def _cart_total(self, db: sqlite3.Connection, user_id: int | None) -> int:
        row = db.execute(
            "SELECT SUM(c.qty * p.price_cents) FROM cart_items c JOIN products p "
            "ON p.id = c.product_id WHERE c.user_id = ?",
            (user_id,),
        ).fetchone()
        return row[0] or 0

    def _cart_page(self, db: sqlite3.Connection, user_id: int | None, layout: dict) -> Response:
        rows = db.execute(
            "SELECT p.id, p.name, c.qty, p.price_cents FROM cart_items c JOIN "
            "products p ON p.id = c.product_id WHERE c.user_id = ? ORDER BY p.name",
            (user_id,),
        ).fetchall()
        if not rows:
            return page("Your cart", "<p>Your cart is empty.</p>", **layout)
        lines = []
        for pid, name, qty, price in rows:
            update = (
                f'<form method="post" action="/cart/update" class="inline">'
                f'<input type="hidden" name="product_id" value="{pid}">'
                f'<input name="qty" value="{qty}" size="3" aria-label="Quantity of {esc(name)}">'
                f' <button type="submit">Update</button></form>'
                f'<form method="post" action="/cart/remove" class="inline">'
                f'<input type="hidden" name="product_id" value="{pid}">'
                f'<button type="submit">Remove {esc(name)}</button></form>'
            )
            lines.append([f'<a href="/product/{pid}">{esc(name)}</a>', update, money(price * qty)])
        body = (
            table(["Product", "Quantity", "Subtotal"], lines)
            + f"<p>Total: {money(self._cart_total(db, user_id))}</p>"
            '<p><a href="/checkout">Proceed to checkout</a></p>'
        )
        return page("Your cart", body, **layout)

    # ------------------------------------------------------------------- changing

    def _post(
        self, db: sqlite3.Connection, request: Request, path: str, user_id: int | None
    ) -> Response:
        form = request.form
        if path == "/login":
            return check_login(db, request, HOST)
        if path == "/logout":
            return log_out(db, request)
        pid = form.get("product_id", "")
        if user_id is None:
            back = f"/product/{pid}" if path == "/cart/add" and pid.isdigit() else "/cart"
            return Response.redirect(f"/login?next={quote(back)}")
        if path == "/cart/add" and pid.isdigit():
            qty = int(form.get("qty", "1")) if form.get("qty", "1").isdigit() else 1
            db.execute(
                "INSERT INTO cart_items VALUES (?, ?, ?) ON CONFLICT(user_id, product_id) "
                "DO UPDATE SET qty = qty + excluded.qty",
                (user_id, int(pid), qty),
            )
            tick(db)
            return Response.redirect("/cart")
        if path == "/cart/update" and pid.isdigit():
            qty = form.get("qty", "").strip()
            if qty.isdigit() and int(qty) > 0:
                db.execute(
                    "UPDATE cart_items SET qty = ? WHERE user_id = ? AND product_id = ?",
                    (int(qty), user_id, int(pid)),
                )
            elif qty == "0":
                db.execute(
                    "DELETE FROM cart_items WHERE user_id = ? AND product_id = ?",
                    (user_id, int(pid)),
                )
            tick(db)
            return Response.redirect("/cart")
        if path == "/cart/remove" and pid.isdigit():
            db.execute(
                "DELETE FROM cart_items WHERE user_id = ? AND product_id = ?", (user_id, int(pid))
            )
            tick(db)
            return Response.redirect("/cart")
        if path == "/checkout":
            lines = dict(
                db.execute(
                    "SELECT product_id, qty FROM cart_items WHERE user_id = ?", (user_id,)
                ).fetchall()
            )
            shipping = form.get("shipping", "standard")
            address = " ".join(form.get("address", "").split())
            if not lines or shipping not in SHIPPING or not address:
                return Response.redirect("/checkout")
            order_id = place_order(db, user_id, address, shipping, lines)
            db.execute("DELETE FROM cart_items WHERE user_id = ?", (user_id,))
            return Response.redirect(f"/orders/{order_id}")
        return Response(400, "Bad request", "text/plain")


def _search_form(q: str) -> str:
    return (
        f'<form method="get" action="/search"><label for="q">Search products</label> '
        f'<input id="q" name="q" value="{esc(q)}"> <button type="submit">Search</button></form>'
    )


def _product_list(rows: list[tuple[int, str, int]]) -> str:
    items = "".join(
        f'<li><a href="/product/{pid}">{esc(name)}</a> {money(price)}</li>'
        for pid, name, price in rows
    )
    return f"<ul>{items}</ul>"
