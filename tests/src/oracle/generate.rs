//! Deterministic statements for the oracle: random recombinations of the constructs where
//! a name's meaning depends on scope (column alias lists on tables, subqueries, functions
//! and VALUES; join aliases; USING and NATURAL joins; LATERAL; CTE column lists;
//! whole-row references; functional notation; correlated subqueries; windows; the write
//! statements' targets, FROM/USING lists, RETURNING and ON CONFLICT) over the oracle's
//! schema (`tests/oracle/schema.sql`), and mutations of given statements that keep their
//! meaning but move them into another scope (a derived table, a CTE, EXPLAIN, a view
//! body, quoted identifiers). The same seed gives the same statements.

/// A xorshift generator: fixed seed, fixed sequence.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Int,
    Text,
    Num,
    Date,
    Addr,
    TextArray,
}

struct Table {
    name: &'static str,
    cols: &'static [(&'static str, Ty)],
    /// Rows of this relation have the composite type `customers` (functional notation).
    customers_row: bool,
    writable: bool,
}

const TABLES: &[Table] = &[
    Table {
        name: "customers",
        cols: &[
            ("id", Ty::Int),
            ("name", Ty::Text),
            ("email", Ty::Text),
            ("card_number", Ty::Text),
            ("country", Ty::Text),
        ],
        customers_row: true,
        writable: true,
    },
    Table {
        name: "orders",
        cols: &[
            ("id", Ty::Int),
            ("customer_id", Ty::Int),
            ("amount", Ty::Num),
            ("status", Ty::Text),
        ],
        customers_row: false,
        writable: true,
    },
    Table {
        name: "reporting.daily_revenue",
        cols: &[("day", Ty::Date), ("orders", Ty::Int), ("revenue", Ty::Num)],
        customers_row: false,
        writable: true,
    },
    Table {
        name: "other.customers",
        cols: &[("id", Ty::Int), ("secret", Ty::Text)],
        customers_row: false,
        writable: true,
    },
    Table {
        name: "t",
        cols: &[("id", Ty::Int), ("v", Ty::Text), ("n", Ty::Int)],
        customers_row: false,
        writable: true,
    },
    Table {
        name: "shipments",
        cols: &[
            ("id", Ty::Int),
            ("order_id", Ty::Int),
            ("dest", Ty::Addr),
            ("tags", Ty::TextArray),
        ],
        customers_row: false,
        writable: true,
    },
    Table {
        name: "customer_emails",
        cols: &[("id", Ty::Int), ("email", Ty::Text)],
        customers_row: false,
        writable: false,
    },
];

/// A name visible in a FROM clause and the columns it carries.
#[derive(Debug, Clone)]
struct Visible {
    qualifier: String,
    cols: Vec<(String, Ty)>,
    customers_row: bool,
}

struct Source {
    sql: String,
    visible: Vec<Visible>,
}

/// The statement generator.
pub struct Generator {
    rng: Rng,
    alias_seq: usize,
    /// CTEs in scope: name and columns.
    ctes: Vec<(String, Vec<(String, Ty)>)>,
}

impl Generator {
    pub fn new(seed: u64) -> Generator {
        Generator {
            rng: Rng::new(seed),
            alias_seq: 0,
            ctes: Vec::new(),
        }
    }

    fn alias(&mut self, prefix: &str) -> String {
        self.alias_seq += 1;
        format!("{prefix}{}", self.alias_seq)
    }

    /// One random statement.
    pub fn statement(&mut self) -> String {
        self.alias_seq = 0;
        self.ctes.clear();
        match self.rng.below(10) {
            0..=4 => self.select(2),
            5 => self.insert(),
            6 => self.update(),
            7 => self.delete(),
            8 => self.merge(),
            _ => {
                let w = self.with_clause();
                format!("{w}{}", self.select(1))
            }
        }
    }

    fn with_clause(&mut self) -> String {
        let name = self.alias("w");
        let src = self.source(1, &[]);
        let n = 1 + self.rng.below(3);
        let cols = self.pick_columns(&src.visible, n);
        let rename = self.rng.chance(60);
        let mut out_cols = Vec::new();
        let mut exprs = Vec::new();
        for (i, (expr, ty)) in cols.iter().enumerate() {
            let n = format!("x{i}");
            exprs.push(if rename {
                expr.clone()
            } else {
                format!("{expr} AS {n}")
            });
            out_cols.push((n, *ty));
        }
        // A shorter column list renames only the first columns.
        let listed = if rename && out_cols.len() > 1 && self.rng.chance(50) {
            out_cols.len() - 1
        } else {
            out_cols.len()
        };
        if rename && listed < out_cols.len() {
            // The unlisted column keeps its own name: make it one we know.
            let last = exprs.len() - 1;
            exprs[last] = format!("{} AS x{last}", cols[last].0);
        }
        let list = if rename {
            format!(
                "({})",
                out_cols[..listed]
                    .iter()
                    .map(|c| c.0.clone())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            String::new()
        };
        let materialized = if self.rng.chance(20) {
            "MATERIALIZED "
        } else {
            ""
        };
        self.ctes.push((name.clone(), out_cols));
        format!(
            "WITH {name}{list} AS {materialized}(SELECT {} FROM {}) ",
            exprs.join(", "),
            src.sql
        )
    }

    fn select(&mut self, depth: u32) -> String {
        let src = self.source(depth, &[]);
        let mut sql = String::from("SELECT ");
        if self.rng.chance(10) {
            sql.push_str("DISTINCT ");
        }
        let n = 1 + self.rng.below(3);
        let mut items = Vec::new();
        let grouped = self.rng.chance(15);
        if grouped {
            let (e, _) = self.column(&src.visible);
            items.push(e);
            items.push(format!("count(*) AS cnt{}", self.alias_seq));
        } else {
            for _ in 0..n {
                items.push(self.select_item(&src.visible, depth));
            }
        }
        sql.push_str(&items.join(", "));
        sql.push_str(" FROM ");
        sql.push_str(&src.sql);
        if self.rng.chance(50) {
            sql.push_str(" WHERE ");
            sql.push_str(&self.condition(&src.visible, depth));
        }
        if grouped {
            sql.push_str(if self.rng.chance(50) {
                " GROUP BY 1"
            } else {
                " GROUP BY 1 ORDER BY 2"
            });
        } else if self.rng.chance(30) {
            if self.rng.chance(50) {
                sql.push_str(" ORDER BY 1");
            } else {
                let (e, _) = self.column(&src.visible);
                sql.push_str(&format!(" ORDER BY {e}"));
            }
        }
        if self.rng.chance(20) {
            sql.push_str(" LIMIT 3");
        }
        if depth > 0 && self.rng.chance(8) {
            let other = self.select(0);
            sql = format!("SELECT count(*) FROM ({sql}) AS u1, ({other}) AS u2");
        }
        sql
    }

    fn select_item(&mut self, visible: &[Visible], depth: u32) -> String {
        if visible.is_empty() {
            return "1".into();
        }
        let v = self.rng.pick(visible).clone();
        match self.rng.below(14) {
            0 => format!("{}.*", v.qualifier),
            1 => v.qualifier.clone(),
            2 => format!("{}::text", v.qualifier),
            3 => format!("row_to_json({})", v.qualifier),
            4 if !v.cols.is_empty() => {
                let (c, _) = self.rng.pick(&v.cols).clone();
                format!("({}).{c}", v.qualifier)
            }
            5 if v.customers_row => format!("{}.card_tail", v.qualifier),
            6 if depth > 0 => {
                let (e, _) = self.column(visible);
                let t = self.rng.pick(TABLES);
                let a = self.alias("q");
                let (c, _) = self.rng.pick(t.cols);
                format!(
                    "(SELECT {a}.{c}::text FROM {} {a} WHERE {a}.{c}::text = {e}::text LIMIT 1)",
                    t.name
                )
            }
            7 => {
                let (e, _) = self.column(visible);
                let (p, _) = self.column(visible);
                format!("count({e}) OVER (PARTITION BY {p} ORDER BY {e})")
            }
            8 => {
                let (e, _) = self.column(visible);
                format!("{e} AS r{}", self.rng.below(100))
            }
            _ => self.column(visible).0,
        }
    }

    /// A column reference: qualified mostly, bare sometimes.
    fn column(&mut self, visible: &[Visible]) -> (String, Ty) {
        let with_cols: Vec<&Visible> = visible.iter().filter(|v| !v.cols.is_empty()).collect();
        if with_cols.is_empty() {
            return ("1".into(), Ty::Int);
        }
        let v = *self.rng.pick(&with_cols);
        let (c, ty) = self.rng.pick(&v.cols).clone();
        if self.rng.chance(25) {
            (c, ty)
        } else {
            (format!("{}.{c}", v.qualifier), ty)
        }
    }

    fn pick_columns(&mut self, visible: &[Visible], n: usize) -> Vec<(String, Ty)> {
        (0..n).map(|_| self.column(visible)).collect()
    }

    fn condition(&mut self, visible: &[Visible], depth: u32) -> String {
        match self.rng.below(5) {
            0 => {
                let (e, _) = self.column(visible);
                format!("{e} IS NOT NULL")
            }
            1 if depth > 0 => {
                let inner = self.source(0, visible);
                let (e, _) = self.column(&inner.visible);
                let (o, _) = self.column(visible);
                format!(
                    "EXISTS (SELECT 1 FROM {} WHERE {e}::text = {o}::text)",
                    inner.sql
                )
            }
            2 if !visible.is_empty() => {
                let v = self.rng.pick(visible).clone();
                format!("{} IS NOT NULL", v.qualifier)
            }
            _ => {
                let (a, _) = self.column(visible);
                let (b, _) = self.column(visible);
                format!("{a}::text = {b}::text")
            }
        }
    }

    /// A FROM list; `outer` is visible to LATERAL items.
    fn source(&mut self, depth: u32, outer: &[Visible]) -> Source {
        let first = self.range_item(depth, outer);
        if self.rng.chance(25) {
            let mut seen = outer.to_vec();
            seen.extend(first.visible.iter().cloned());
            let second = if self.rng.chance(50) {
                self.lateral(&seen)
            } else {
                self.range_item(depth.saturating_sub(1), outer)
            };
            let mut visible = first.visible;
            visible.extend(second.visible);
            return Source {
                sql: format!("{}, {}", first.sql, second.sql),
                visible,
            };
        }
        first
    }

    fn lateral(&mut self, seen: &[Visible]) -> Source {
        let a = self.alias("l");
        if self.rng.chance(50) {
            let (e, ty) = self.column(seen);
            Source {
                sql: format!("LATERAL (SELECT {e} AS m) {a}"),
                visible: vec![Visible {
                    qualifier: a,
                    cols: vec![("m".into(), ty)],
                    customers_row: false,
                }],
            }
        } else {
            let (e, _) = self.column(seen);
            Source {
                sql: format!("LATERAL unnest(ARRAY[{e}::text]) AS {a}(m)"),
                visible: vec![Visible {
                    qualifier: a,
                    cols: vec![("m".into(), Ty::Text)],
                    customers_row: false,
                }],
            }
        }
    }

    fn range_item(&mut self, depth: u32, outer: &[Visible]) -> Source {
        let choice = if depth == 0 {
            self.rng.below(4)
        } else {
            self.rng.below(9)
        };
        match choice {
            0..=2 => self.base(),
            3 if !self.ctes.is_empty() => {
                let (name, cols) = self.rng.pick(&self.ctes).clone();
                let a = self.alias("c");
                let (sql, cols) = self.maybe_rename(&format!("{name} {a}"), cols);
                Source {
                    sql,
                    visible: vec![Visible {
                        qualifier: a,
                        cols,
                        customers_row: false,
                    }],
                }
            }
            3 | 4 => self.join(depth),
            5 => {
                let inner = self.source(depth - 1, outer);
                let n = 1 + self.rng.below(3);
                let cols = self.pick_columns(&inner.visible, n);
                let a = self.alias("s");
                let mut exprs = Vec::new();
                let mut out = Vec::new();
                for (i, (e, ty)) in cols.iter().enumerate() {
                    exprs.push(format!("{e} AS o{i}"));
                    out.push((format!("o{i}"), *ty));
                }
                let (sql, out) = self.maybe_rename(
                    &format!("(SELECT {} FROM {}) AS {a}", exprs.join(", "), inner.sql),
                    out,
                );
                Source {
                    sql,
                    visible: vec![Visible {
                        qualifier: a,
                        cols: out,
                        customers_row: false,
                    }],
                }
            }
            6 => {
                let a = self.alias("f");
                match self.rng.below(4) {
                    0 => Source {
                        sql: format!("(VALUES (1, 'a'), (2, 'b')) AS {a}(n, t)"),
                        visible: vec![Visible {
                            qualifier: a,
                            cols: vec![("n".into(), Ty::Int), ("t".into(), Ty::Text)],
                            customers_row: false,
                        }],
                    },
                    1 => Source {
                        sql: format!("generate_series(1, 2) AS {a}(n)"),
                        visible: vec![Visible {
                            qualifier: a,
                            cols: vec![("n".into(), Ty::Int)],
                            customers_row: false,
                        }],
                    },
                    _ => {
                        let cols: Vec<(String, Ty)> = TABLES[0]
                            .cols
                            .iter()
                            .map(|(c, t)| (c.to_string(), *t))
                            .collect();
                        let (sql, cols) =
                            self.maybe_rename(&format!("all_customers() AS {a}"), cols);
                        Source {
                            sql,
                            visible: vec![Visible {
                                qualifier: a,
                                cols,
                                customers_row: true,
                            }],
                        }
                    }
                }
            }
            _ => self.join(depth),
        }
    }

    /// Adds a column alias list renaming some leading columns, sometimes.
    fn maybe_rename(&mut self, sql: &str, cols: Vec<(String, Ty)>) -> (String, Vec<(String, Ty)>) {
        if cols.is_empty() || !self.rng.chance(45) {
            return (sql.to_string(), cols);
        }
        let k = 1 + self.rng.below(cols.len());
        let mut out = cols.clone();
        let mut names = Vec::new();
        for (i, c) in out.iter_mut().take(k).enumerate() {
            c.0 = format!("{}{i}", ["a", "k", "z"][self.rng.below(3)]);
            names.push(c.0.clone());
        }
        (format!("{sql}({})", names.join(", ")), out)
    }

    fn base(&mut self) -> Source {
        let t = self.rng.pick(TABLES);
        let cols: Vec<(String, Ty)> = t.cols.iter().map(|(c, ty)| (c.to_string(), *ty)).collect();
        if self.rng.chance(20) {
            // No alias: the relation's own name qualifies.
            let q = t.name.rsplit('.').next().unwrap_or(t.name).to_string();
            return Source {
                sql: t.name.to_string(),
                visible: vec![Visible {
                    qualifier: q,
                    cols,
                    customers_row: t.customers_row,
                }],
            };
        }
        let a = self.alias("b");
        let head = if self.rng.chance(30) {
            format!("{} AS {a}", t.name)
        } else {
            format!("{} {a}", t.name)
        };
        let (sql, cols) = self.maybe_rename(&head, cols);
        Source {
            sql,
            visible: vec![Visible {
                qualifier: a,
                cols,
                customers_row: t.customers_row,
            }],
        }
    }

    fn join(&mut self, depth: u32) -> Source {
        let left = self.range_item(depth.saturating_sub(1), &[]);
        let right = self.range_item(depth.saturating_sub(1), &[]);
        let kind = *self
            .rng
            .pick(&["JOIN", "LEFT JOIN", "RIGHT JOIN", "FULL JOIN", "INNER JOIN"]);
        // Columns both sides carry under one name, for USING and NATURAL.
        let left_cols: Vec<(String, Ty)> =
            left.visible.iter().flat_map(|v| v.cols.clone()).collect();
        let right_cols: Vec<(String, Ty)> =
            right.visible.iter().flat_map(|v| v.cols.clone()).collect();
        let common: Vec<(String, Ty)> = left_cols
            .iter()
            .filter(|(c, ty)| {
                right_cols.iter().any(|(d, t2)| d == c && t2 == ty)
                    && left_cols.iter().filter(|(d, _)| d == c).count() == 1
                    && right_cols.iter().filter(|(d, _)| d == c).count() == 1
            })
            .cloned()
            .collect();
        let mut all = left.visible.clone();
        all.extend(right.visible.iter().cloned());
        let (sql, using) = match self.rng.below(5) {
            0 | 1 if !common.is_empty() => {
                let (c, ty) = self.rng.pick(&common).clone();
                let alias = if self.rng.chance(30) {
                    Some(self.alias("u"))
                } else {
                    None
                };
                let sql = match &alias {
                    Some(a) => format!("{} {kind} {} USING ({c}) AS {a}", left.sql, right.sql),
                    None => format!("{} {kind} {} USING ({c})", left.sql, right.sql),
                };
                if let Some(a) = alias {
                    all.push(Visible {
                        qualifier: a,
                        cols: vec![(c.clone(), ty)],
                        customers_row: false,
                    });
                }
                (sql, vec![(c, ty)])
            }
            2 if !common.is_empty() && common.len() == count_common(&left_cols, &right_cols) => (
                format!("{} NATURAL {kind} {}", left.sql, right.sql),
                common.clone(),
            ),
            3 => (format!("{} CROSS JOIN {}", left.sql, right.sql), Vec::new()),
            _ => {
                let (a, _) = self.column(&left.visible);
                let (b, _) = self.column(&right.visible);
                (
                    format!("{} {kind} {} ON {a}::text = {b}::text", left.sql, right.sql),
                    Vec::new(),
                )
            }
        };
        if self.rng.chance(35) {
            // A join alias hides the names inside it; its columns are both sides' columns
            // with merged USING columns once.
            let j = self.alias("j");
            let mut cols = using.clone();
            for (c, ty) in left_cols.iter().chain(right_cols.iter()) {
                if !using.iter().any(|(u, _)| u == c) {
                    cols.push((c.clone(), *ty));
                }
            }
            // Names that occur twice are ambiguous through the alias: drop them.
            let unique: Vec<(String, Ty)> = cols
                .iter()
                .filter(|(c, _)| cols.iter().filter(|(d, _)| d == c).count() == 1)
                .cloned()
                .collect();
            return Source {
                sql: format!("({sql}) AS {j}"),
                visible: vec![Visible {
                    qualifier: j,
                    cols: unique,
                    customers_row: false,
                }],
            };
        }
        // Bare USING columns are visible unqualified too: leave them to `column`.
        Source { sql, visible: all }
    }

    fn writable(&mut self) -> &'static Table {
        loop {
            let t = self.rng.pick(TABLES);
            if t.writable {
                return t;
            }
        }
    }

    fn coerce(expr: &str, ty: Ty) -> String {
        match ty {
            Ty::Text => format!("({expr})::text"),
            Ty::Int => format!("length(({expr})::text)"),
            Ty::Num => format!("length(({expr})::text)::numeric"),
            Ty::Date => "current_date".into(),
            Ty::Addr => "NULL::address".into(),
            Ty::TextArray => format!("ARRAY[({expr})::text]"),
        }
    }

    fn returning(&mut self, qualifier: &str, cols: &[(&'static str, Ty)]) -> String {
        match self.rng.below(5) {
            0 => " RETURNING *".into(),
            1 => format!(" RETURNING {}", self.rng.pick(cols).0),
            2 => format!(" RETURNING {qualifier}"),
            3 => format!(" RETURNING {qualifier}.{}", self.rng.pick(cols).0),
            _ => String::new(),
        }
    }

    fn insert(&mut self) -> String {
        let t = self.writable();
        let src = self.source(1, &[]);
        let k = 1 + self.rng.below(t.cols.len());
        let targets: Vec<(&str, Ty)> = t.cols[..k].to_vec();
        let listed = self.rng.chance(60) || k < t.cols.len();
        let exprs: Vec<String> = targets
            .iter()
            .map(|(_, ty)| {
                let (e, _) = self.column(&src.visible);
                Self::coerce(&e, *ty)
            })
            .collect();
        let cols = if listed {
            format!(
                " ({})",
                targets.iter().map(|c| c.0).collect::<Vec<_>>().join(", ")
            )
        } else {
            String::new()
        };
        let q = t.name.rsplit('.').next().unwrap_or(t.name).to_string();
        let (alias, q) = if self.rng.chance(30) {
            (" AS x".to_string(), "x".to_string())
        } else {
            (String::new(), q)
        };
        let mut sql = format!(
            "INSERT INTO {}{alias}{cols} SELECT {} FROM {}",
            t.name,
            exprs.join(", "),
            src.sql
        );
        if t.cols[0].0 == "id" && t.name != "orders" && self.rng.chance(40) {
            let (c, ty) = *self.rng.pick(t.cols);
            let set = match self.rng.below(3) {
                0 => format!("{c} = EXCLUDED.{c}"),
                1 => format!("{c} = {}", Self::coerce(&format!("{q}.{c}"), ty)),
                _ => format!(
                    "{c} = {}",
                    Self::coerce(&format!("EXCLUDED.{}", t.cols[0].0), ty)
                ),
            };
            let pk_only = matches!(t.name, "customers" | "other.customers" | "t" | "shipments");
            if pk_only {
                sql.push_str(&format!(" ON CONFLICT (id) DO UPDATE SET {set}"));
            }
        }
        sql.push_str(&self.returning(&q, t.cols));
        sql
    }

    fn update(&mut self) -> String {
        let t = self.writable();
        let a = self.alias("t");
        let target = Visible {
            qualifier: a.clone(),
            cols: t.cols.iter().map(|(c, ty)| (c.to_string(), *ty)).collect(),
            customers_row: t.customers_row,
        };
        let from = if self.rng.chance(60) {
            Some(self.source(1, &[]))
        } else {
            None
        };
        let mut visible = vec![target];
        if let Some(f) = &from {
            visible.extend(f.visible.iter().cloned());
        }
        let (c, ty) = *self.rng.pick(t.cols);
        let (e, _) = self.column(&visible);
        let mut sql = format!("UPDATE {} {a} SET {c} = {}", t.name, Self::coerce(&e, ty));
        if let Some(f) = &from {
            sql.push_str(&format!(" FROM {}", f.sql));
        }
        if self.rng.chance(70) {
            sql.push_str(&format!(" WHERE {}", self.condition(&visible, 1)));
        }
        sql.push_str(&self.returning(&a, t.cols));
        sql
    }

    fn delete(&mut self) -> String {
        let t = self.writable();
        let a = self.alias("t");
        let target = Visible {
            qualifier: a.clone(),
            cols: t.cols.iter().map(|(c, ty)| (c.to_string(), *ty)).collect(),
            customers_row: t.customers_row,
        };
        let using = if self.rng.chance(60) {
            Some(self.source(1, &[]))
        } else {
            None
        };
        let mut visible = vec![target];
        if let Some(u) = &using {
            visible.extend(u.visible.iter().cloned());
        }
        let mut sql = format!("DELETE FROM {} AS {a}", t.name);
        if let Some(u) = &using {
            sql.push_str(&format!(" USING {}", u.sql));
        }
        if self.rng.chance(80) {
            sql.push_str(&format!(" WHERE {}", self.condition(&visible, 1)));
        }
        sql.push_str(&self.returning(&a, t.cols));
        sql
    }

    fn merge(&mut self) -> String {
        let t = self.writable();
        let a = self.alias("t");
        let src = self.range_item(1, &[]);
        let target = Visible {
            qualifier: a.clone(),
            cols: t.cols.iter().map(|(c, ty)| (c.to_string(), *ty)).collect(),
            customers_row: t.customers_row,
        };
        let mut visible = vec![target.clone()];
        visible.extend(src.visible.iter().cloned());
        let (l, _) = self.column(std::slice::from_ref(&target));
        let (r, _) = self.column(&src.visible);
        let mut sql = format!(
            "MERGE INTO {} {a} USING {} ON {l}::text = {r}::text",
            t.name, src.sql
        );
        if self.rng.chance(70) {
            let (c, ty) = *self.rng.pick(t.cols);
            let (e, _) = self.column(&visible);
            sql.push_str(&format!(
                " WHEN MATCHED THEN UPDATE SET {c} = {}",
                Self::coerce(&e, ty)
            ));
        } else {
            sql.push_str(" WHEN MATCHED THEN DELETE");
        }
        if self.rng.chance(60) {
            let values: Vec<String> = t
                .cols
                .iter()
                .map(|(_, ty)| {
                    let (e, _) = self.column(&src.visible);
                    Self::coerce(&e, *ty)
                })
                .collect();
            sql.push_str(&format!(
                " WHEN NOT MATCHED THEN INSERT VALUES ({})",
                values.join(", ")
            ));
        }
        sql
    }
}

fn count_common(left: &[(String, Ty)], right: &[(String, Ty)]) -> usize {
    left.iter()
        .filter(|(c, _)| right.iter().any(|(d, _)| d == c))
        .count()
}

/// Statements with the same meaning as `sql` (a SELECT, or a write with RETURNING) in
/// another scope: a derived table, a CTE, EXPLAIN, quoted identifiers.
pub fn mutations(sql: &str, rng: &mut Rng) -> Vec<String> {
    let mut out = Vec::new();
    let upper = sql.trim_start().to_ascii_uppercase();
    let is_query = upper.starts_with("SELECT")
        || upper.starts_with("WITH")
        || upper.starts_with("TABLE")
        || upper.starts_with("VALUES");
    let returns = upper.contains("RETURNING");
    if is_query {
        out.push(format!("SELECT * FROM ({sql}) AS m"));
        out.push(format!("SELECT m FROM ({sql}) AS m"));
        out.push(format!("SELECT count(*) FROM ({sql}) AS m(a)"));
        out.push(format!("SELECT * FROM customers WHERE EXISTS ({sql})"));
        out.push(format!("SELECT ({sql} LIMIT 1) AS m", sql = limited(sql)));
    }
    if is_query || returns {
        out.push(format!("WITH m AS ({sql}) SELECT * FROM m"));
    }
    out.push(format!("EXPLAIN {sql}"));
    if let Some(q) = quote_identifiers(sql, rng) {
        out.push(q);
    }
    out
}

/// A query usable as a scalar subquery's body: one column is not guaranteed, so the
/// caller's statement may fail on the server (it is then skipped).
fn limited(sql: &str) -> String {
    format!("SELECT 1 FROM ({sql}) AS m")
}

/// `sql` with some unreserved identifiers written as quoted identifiers.
fn quote_identifiers(sql: &str, rng: &mut Rng) -> Option<String> {
    let tokens = pg_query::scan_tokens(sql).ok()?;
    let mut out = String::new();
    let mut last = 0usize;
    let mut changed = false;
    for t in tokens {
        let (start, end) = (t.start as usize, t.end as usize);
        let text = sql.get(start..end)?;
        if t.token == pg_query::protobuf::Token::Ident as i32
            && text
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
            && rng.chance(50)
        {
            out.push_str(sql.get(last..start)?);
            out.push('"');
            out.push_str(text);
            out.push('"');
            last = end;
            changed = true;
        }
    }
    out.push_str(sql.get(last..)?);
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_parseable() {
        let a: Vec<String> = {
            let mut g = Generator::new(7);
            (0..200).map(|_| g.statement()).collect()
        };
        let mut g = Generator::new(7);
        let b: Vec<String> = (0..200).map(|_| g.statement()).collect();
        assert_eq!(a, b);
        let parsed = a
            .iter()
            .filter(|s| pg_query::parse(s, pg_query::ParserOptions::DEFAULT).is_ok())
            .count();
        assert!(parsed >= 190, "only {parsed} of 200 parse");
    }
}
