//! SQL written once for both backends: a statement is text with numbered `$n` placeholders
//! (which both PostgreSQL and sqlx's SQLite read) and typed arguments that each backend binds its
//! own way (a time is a `timestamptz` on PostgreSQL and fixed-width RFC 3339 text on SQLite).
//! [`Dialect`] holds the few fragments that really differ.

use chrono::{DateTime, SecondsFormat, Utc};

/// How SQLite stores a time: fixed-width RFC 3339 text (microseconds, `Z`), so that text order
/// is time order and range filters use the indexes.
pub(crate) fn sqlite_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Which SQL a backend speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Postgres,
    Sqlite,
}

impl Dialect {
    /// `floor(column / $bin)` as an integer, `bin` a float parameter (SQLite has no floor() in
    /// every build).
    pub(crate) fn floor_div(self, column: &str, bin: &str) -> String {
        match self {
            Self::Postgres => format!("floor({column} / {bin})::int8"),
            Self::Sqlite => format!(
                "(CAST({column} / {bin} AS INTEGER) - ({column} < 0 AND {column} / {bin} != \
                 CAST({column} / {bin} AS INTEGER)))"
            ),
        }
    }

    /// Integer `floor(column / k)` of an integer column, `k` a positive integer parameter.
    pub(crate) fn floor_div_int(self, column: &str, k: &str) -> String {
        match self {
            Self::Postgres => format!("floor({column}::float8 / {k})::int8"),
            Self::Sqlite => format!(
                "(CASE WHEN {column} >= 0 THEN {column} / {k} ELSE -((-{column} + {k} - 1) / {k}) END)"
            ),
        }
    }

    /// `(timestamp, id) > (at, id)`: the keyset cursor of paged reads. PostgreSQL compares the
    /// row value off its index; SQLite is given the expanded form.
    pub(crate) fn after(self, at: &str, id: &str) -> String {
        match self {
            Self::Postgres => format!("(timestamp, id) > ({at}, {id})"),
            Self::Sqlite => format!("(timestamp > {at} OR (timestamp = {at} AND id > {id}))"),
        }
    }

    /// Every character's latest telemetry at or before `$1` and after `$2`, by name, at most `$3`:
    /// one index probe per character seen around then ((character_name, timestamp DESC)).
    pub(crate) fn world_at(self, columns: &str) -> String {
        match self {
            Self::Postgres => format!(
                "SELECT t.* FROM characters c CROSS JOIN LATERAL ( \
                     SELECT {columns} FROM telemetry_events e \
                     WHERE e.character_name = c.character_name \
                       AND e.timestamp <= $1 AND e.timestamp > $2 \
                     ORDER BY e.timestamp DESC LIMIT 1) t \
                 WHERE c.last_seen > $2 AND c.first_seen <= $1 \
                 ORDER BY c.character_name LIMIT $3"
            ),
            Self::Sqlite => format!(
                "SELECT {columns} FROM telemetry_events WHERE id IN ( \
                     SELECT (SELECT e.id FROM telemetry_events e \
                             WHERE e.character_name = c.character_name \
                               AND e.timestamp <= $1 AND e.timestamp > $2 \
                             ORDER BY e.timestamp DESC LIMIT 1) \
                     FROM characters c WHERE c.last_seen > $2 AND c.first_seen <= $1) \
                 ORDER BY character_name LIMIT $3"
            ),
        }
    }
}

/// One argument of a statement.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Arg {
    Text(String),
    OptText(Option<String>),
    Int(i64),
    OptInt(Option<i64>),
    Float(f64),
    OptFloat(Option<f64>),
    Time(DateTime<Utc>),
    /// A JSON document as text (a `jsonb` column on PostgreSQL, text on SQLite).
    Json(String),
    /// A whole column of values, as one PostgreSQL array (`UNNEST`); never bound on SQLite.
    Column(Column),
}

/// One column's values as a PostgreSQL array.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Column {
    Text(Vec<Option<String>>),
    Int(Vec<Option<i64>>),
    Float(Vec<Option<f64>>),
    Time(Vec<DateTime<Utc>>),
}

impl Column {
    /// The values of one column (all of one kind: a row's column is always built alike);
    /// `None` for an empty column or mixed kinds.
    pub(crate) fn of<'a>(values: impl IntoIterator<Item = &'a Arg>) -> Option<Self> {
        let mut values = values.into_iter().peekable();
        let first = values.peek()?;
        let column = match first {
            Arg::Text(_) | Arg::OptText(_) | Arg::Json(_) => {
                let texts = values.map(|v| match v {
                    Arg::Text(t) | Arg::Json(t) => Some(Some(t.clone())),
                    Arg::OptText(t) => Some(t.clone()),
                    _ => None,
                });
                Self::Text(texts.collect::<Option<_>>()?)
            }
            Arg::Int(_) | Arg::OptInt(_) => {
                let ints = values.map(|v| match v {
                    Arg::Int(i) => Some(Some(*i)),
                    Arg::OptInt(i) => Some(*i),
                    _ => None,
                });
                Self::Int(ints.collect::<Option<_>>()?)
            }
            Arg::Float(_) | Arg::OptFloat(_) => {
                let floats = values.map(|v| match v {
                    Arg::Float(f) => Some(Some(*f)),
                    Arg::OptFloat(f) => Some(*f),
                    _ => None,
                });
                Self::Float(floats.collect::<Option<_>>()?)
            }
            Arg::Time(_) => {
                let times = values.map(|v| match v {
                    Arg::Time(t) => Some(*t),
                    _ => None,
                });
                Self::Time(times.collect::<Option<_>>()?)
            }
            Arg::Column(_) => return None,
        };
        Some(column)
    }

    /// Its PostgreSQL array type.
    pub(crate) fn sql_type(&self) -> &'static str {
        match self {
            Self::Text(_) => "text[]",
            Self::Int(_) => "int8[]",
            Self::Float(_) => "float8[]",
            Self::Time(_) => "timestamptz[]",
        }
    }
}

impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Self::Text(v.to_owned())
    }
}

impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Self {
        Self::OptText(v.map(str::to_owned))
    }
}

/// `Arg::from` for the types that map onto one variant as they are.
macro_rules! arg_from {
    ($($t:ty => $variant:ident),* $(,)?) => {$(
        impl From<$t> for Arg {
            fn from(v: $t) -> Self {
                Self::$variant(v)
            }
        }
    )*};
}

arg_from! {
    String => Text,
    Option<String> => OptText,
    i64 => Int,
    Option<i64> => OptInt,
    f64 => Float,
    Option<f64> => OptFloat,
    DateTime<Utc> => Time,
}

/// A statement: its text and its arguments, in placeholder order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sql {
    pub(crate) text: String,
    pub(crate) args: Vec<Arg>,
}

impl Sql {
    /// A statement whose placeholders `$1..$n` are the `args` in order.
    pub(crate) fn new(text: impl Into<String>, args: Vec<Arg>) -> Self {
        Self {
            text: text.into(),
            args,
        }
    }

    /// Appends text.
    pub(crate) fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends the next placeholder, bound to `arg`.
    pub(crate) fn bind(&mut self, arg: impl Into<Arg>) -> &mut Self {
        self.args.push(arg.into());
        let n = self.args.len();
        self.text.push('$');
        self.text.push_str(&n.to_string());
        self
    }

    /// Appends the next placeholder as a value of a column: a JSON argument is cast to `jsonb`
    /// on PostgreSQL.
    pub(crate) fn value(&mut self, dialect: Dialect, arg: Arg) -> &mut Self {
        let json = matches!(arg, Arg::Json(_)) && dialect == Dialect::Postgres;
        if json {
            self.push("CAST(");
        }
        self.bind(arg);
        if json {
            self.push(" AS JSONB)");
        }
        self
    }

    /// A placeholder for `arg`, to write into text pushed next (for an argument used twice).
    pub(crate) fn param(&mut self, arg: impl Into<Arg>) -> String {
        self.args.push(arg.into());
        format!("${}", self.args.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_follow_the_arguments() {
        let mut sql = Sql::new("SELECT 1 WHERE a = ", Vec::new());
        sql.bind("x").push(" AND b < ").bind(3_i64);
        let at = sql.param(Utc::now());
        sql.push(&format!(" AND {}", Dialect::Sqlite.after(&at, "0")));
        assert_eq!(
            sql.text,
            "SELECT 1 WHERE a = $1 AND b < $2 AND (timestamp > $3 OR (timestamp = $3 AND id > 0))"
        );
        assert_eq!(sql.args.len(), 3);
    }
}
