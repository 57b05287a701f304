//! The names a query's FROM items put in scope, and which columns of which relations a
//! column reference reads through them.
//!
//! Every way SQL names a column goes through here: `c`, `t.c`, `s.t.c`, `t.*`, `*`, a
//! whole row (`t`, `t::text`, `row_to_json(t)`, `(t).c`), a join's alias (`j.c` reads `c`
//! of every relation inside the join), a column alias list (`customers AS c(i, n, e, k)`:
//! the alias names columns by position, which only the catalog could map, so any reference
//! through it reads every column). Where a reference could mean several things, it reads
//! all of them: the server picks one, and the facts must hold whichever it is.

use super::facts::{Columns, Facts, RowCall};

/// One name a FROM item makes visible.
pub(super) struct ScopeItem {
    pub name: String,
    /// The base relations (indexes into `Facts::accesses`) whose columns a reference
    /// through this name reads: one for a table, all of them for a join's alias, none for
    /// a subquery, function, VALUES list or CTE, whose own analysis covers what they read.
    pub accesses: Vec<usize>,
    /// A reference through this name may read any column (a column alias list, a
    /// NATURAL join): the columns it names are not the relation's own.
    pub every_column: bool,
}

/// The scopes of the query levels being walked, innermost last.
#[derive(Default)]
pub(super) struct Scopes {
    levels: Vec<Vec<ScopeItem>>,
}

/// A column reference's fields: a name, or `None` for `*`.
pub(super) type Fields = [Option<String>];

impl Scopes {
    pub fn push(&mut self) {
        self.levels.push(Vec::new());
    }

    pub fn pop(&mut self) {
        self.levels.pop();
    }

    pub fn add(&mut self, item: ScopeItem) {
        if let Some(level) = self.levels.last_mut() {
            level.push(item);
        }
    }

    /// How many items the innermost level has: a mark for [`Scopes::since`].
    pub fn mark(&self) -> usize {
        self.levels.last().map_or(0, Vec::len)
    }

    /// The items added to the innermost level since `mark`: what a join holds.
    pub fn since(&self, mark: usize) -> &[ScopeItem] {
        self.levels
            .last()
            .map_or(&[], |l| l.get(mark..).unwrap_or(&[]))
    }

    /// The item a join's alias adds: every relation inside it, through names that may be
    /// renamed if any inside is (a column alias list there makes `j.y` any column).
    pub fn join_item(&self, mark: usize, name: String, renames: bool) -> ScopeItem {
        let inside = self.since(mark);
        let mut accesses: Vec<usize> = inside
            .iter()
            .flat_map(|i| i.accesses.iter().copied())
            .collect();
        accesses.sort_unstable();
        accesses.dedup();
        ScopeItem {
            name,
            accesses,
            every_column: renames || inside.iter().any(|i| i.every_column),
        }
    }

    /// `USING (c)`: column c is read on both sides, through their own names (a side whose
    /// names are renamed reads any column).
    pub fn using(&self, mark: usize, name: &str, facts: &mut Facts) {
        for item in self.since(mark) {
            column(item, name, facts);
        }
    }

    fn items(&self) -> impl Iterator<Item = &ScopeItem> {
        self.levels.iter().rev().flat_map(|l| l.iter())
    }

    /// Records what a column reference reads.
    pub fn column_ref(&self, fields: &Fields, facts: &mut Facts) {
        match fields {
            [] => {}
            // `*`: every column of everything in the innermost scope.
            [None] => {
                for item in self.levels.last().into_iter().flatten() {
                    every(item, facts);
                }
            }
            // Unqualified: a column of any relation in scope, or a whole row.
            [Some(name)] => {
                for item in self.items() {
                    if item.name == *name {
                        every(item, facts);
                    } else {
                        column(item, name, facts);
                    }
                }
            }
            _ => self.qualified(fields, facts),
        }
    }

    /// `t.c`, `t.*`, `s.t.c`, `db.s.t.c`, and a composite column's fields (`t.c.f`):
    /// every reading in which some field names an item in scope counts, the next field
    /// being a column of it. When none does, the first field is a composite column.
    fn qualified(&self, fields: &Fields, facts: &mut Facts) {
        let mut found = false;
        for (i, field) in fields.iter().enumerate() {
            let Some(name) = field else { continue };
            let Some(next) = fields.get(i + 1) else {
                continue;
            };
            for item in self.items().filter(|it| it.name == *name) {
                found = true;
                match next {
                    Some(col) => {
                        column(item, col, facts);
                        // `t.f` is `f(t)` when t has no column f.
                        let relations = item
                            .accesses
                            .iter()
                            .map(|&i| facts.accesses[i].relation.clone())
                            .collect();
                        facts.row_call(RowCall {
                            name: col.clone(),
                            relations,
                        });
                    }
                    None => every(item, facts),
                }
            }
        }
        if !found && let Some(Some(composite)) = fields.first() {
            for item in self.items() {
                column(item, composite, facts);
            }
            // `c.f` on a composite column: a field, or the function `f(c)`.
            for f in fields.iter().skip(1).flatten() {
                facts.row_call(RowCall {
                    name: f.clone(),
                    relations: Vec::new(),
                });
            }
        }
    }
}

/// Every column of an item's relations is read.
pub(super) fn every(item: &ScopeItem, facts: &mut Facts) {
    for &i in &item.accesses {
        facts.accesses[i].columns = Columns::All;
    }
}

/// Column `name` of an item's relations is read.
fn column(item: &ScopeItem, name: &str, facts: &mut Facts) {
    if item.every_column {
        return every(item, facts);
    }
    for &i in &item.accesses {
        facts.accesses[i].columns.add(name);
    }
}
