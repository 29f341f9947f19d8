"""moto's DynamoDB made fast enough for tables of tens of thousands of items, within the scale
simulation only. Two costs of moto 5.2 grow with the table, not with the request: a transaction
deep-copies every table it touches (for its rollback), and a query on an index sorts and walks
every item of the table. Both are replaced by equivalents that touch only the items concerned:
the rollback restores the items the transaction names, and an index query walks the items whose
index hash key has the queried value (kept in a hash index updated after every write). What
moto answers is unchanged; only how long it takes."""
from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models import table as table_module
from moto.dynamodb.models.dynamo_type import DynamoType

Key = tuple[DynamoType, DynamoType | None]
INDEX = "_scale_hash_index"  # per table: attribute -> value -> {item key: item}
KEYS = "_scale_indexed_keys"  # per table: item key -> {attribute: value indexed}


def _index_attributes(table: Any) -> list[str]:
    names = {table.hash_key_attr}
    for index in [*table.global_indexes, *table.indexes]:
        names.update(k["AttributeName"] for k in index.schema if k["KeyType"] == "HASH")
    return sorted(names)


def _key(table: Any, attributes: dict[str, Any]) -> Key:
    hash_value = DynamoType(attributes[table.hash_key_attr])
    range_value = DynamoType(attributes[table.range_key_attr]) if table.range_key_attr else None
    return hash_value, range_value


def _item(table: Any, key: Key) -> Any:
    hash_value, range_value = key
    if range_value is not None:
        return table.items.get(hash_value, {}).get(range_value)
    return table.items.get(hash_value)


def _reindex(table: Any, key: Key) -> None:
    index: dict[str, dict[DynamoType, dict[Key, Any]]] | None = getattr(table, INDEX, None)
    if index is None:
        return  # built whole on the first index query
    indexed: dict[Key, dict[str, DynamoType]] = getattr(table, KEYS)
    for name, value in indexed.pop(key, {}).items():
        index[name].get(value, {}).pop(key, None)
    item = _item(table, key)
    if item is not None:
        _add(table, index, indexed, key, item)


def _add(table: Any, index: dict[str, Any], indexed: dict[Key, Any], key: Key, item: Any) -> None:
    values = {}
    for name in index:
        value = item.attrs.get(name)
        if value is not None:
            index[name].setdefault(value, {})[key] = item
            values[name] = value
    indexed[key] = values


def _build(table: Any) -> dict[str, dict[DynamoType, dict[Key, Any]]]:
    index: dict[str, dict[DynamoType, dict[Key, Any]]] = {name: {} for name in _index_attributes(table)}
    indexed: dict[Key, dict[str, DynamoType]] = {}
    for item in table_module.Table.all_items(table):
        _add(table, index, indexed, (item.hash_key, item.range_key), item)
    setattr(table, INDEX, index)
    setattr(table, KEYS, indexed)
    return index


class _TablesUncopied:
    """What moto's transaction takes for its backup: the tables themselves (no copy); the patched
    transaction restores the items it touched instead."""

    def deepcopy(self, value: Any, memo: Any = None) -> Any:
        if isinstance(value, table_module.Table):
            return value
        return copy.deepcopy(value, memo)

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)


@contextmanager
def fast_dynamodb() -> Iterator[None]:
    import moto.dynamodb.models as models

    originals = {name: getattr(DynamoDBBackend, name) for name in
                 ("put_item", "update_item", "delete_item", "transact_write_items")}
    original_query = table_module.Table.query
    original_copy = models.copy

    def written(name: str, key_of: Any) -> Any:
        original = originals[name]

        def write(self: Any, table_name: str, attributes: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            table = self.get_table(table_name)
            key = key_of(table, attributes)
            try:
                return original(self, table_name, attributes, *args, **kwargs)
            finally:
                _reindex(table, key)

        return write

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        touched: list[tuple[Any, Key, Any]] = []
        for entry in transact_items:
            _, op = next(iter(entry.items()))
            if op.get("TableName") not in self.tables:
                continue
            table = self.tables[op["TableName"]]
            key = _key(table, op["Item"] if "Item" in op else op["Key"])
            touched.append((table, key, copy.deepcopy(_item(table, key))))
        try:
            originals["transact_write_items"](self, transact_items)
        except Exception:
            for table, key, before in reversed(touched):
                hash_value, range_value = key
                if before is None:
                    if range_value is not None:
                        table.items.get(hash_value, {}).pop(range_value, None)
                    else:
                        table.items.pop(hash_value, None)
                elif range_value is not None:
                    table.items[hash_value][range_value] = before
                else:
                    table.items[hash_value] = before
                _reindex(table, key)
            raise

    def query(self: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = args[7] if len(args) > 7 else kwargs.get("index_name")
        conditions = kwargs.get("hash_key_conditions") or []
        if not index_name or len(conditions) != 1:
            return original_query(self, *args, **kwargs)
        name, value = conditions[0]
        index = getattr(self, INDEX, None) or _build(self)
        if name not in index:
            return original_query(self, *args, **kwargs)
        candidates = list(index[name].get(value, {}).values())
        self.all_items = lambda: sorted(candidates, key=lambda x: (x.hash_key, x.range_key) if x.range_key else x.hash_key)
        try:
            return original_query(self, *args, **kwargs)
        finally:
            del self.all_items

    DynamoDBBackend.put_item = written("put_item", lambda table, attributes: _key(table, attributes))
    DynamoDBBackend.update_item = written("update_item", lambda table, key: _key(table, key))
    DynamoDBBackend.delete_item = written("delete_item", lambda table, key: _key(table, key))
    DynamoDBBackend.transact_write_items = transact_write_items
    table_module.Table.query = query
    models.copy = _TablesUncopied()
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(DynamoDBBackend, name, original)
        table_module.Table.query = original_query
        models.copy = original_copy
