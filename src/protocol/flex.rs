//! Lenient deserializers for plugin fields: numbers may come as numbers or numeric strings,
//! text as text or numbers, timestamps in every form `super::timestamp` accepts.

use super::*;
use serde::Deserializer;
use serde::de::{self, Visitor};
use std::fmt;

#[derive(Debug)]
enum Num {
    Int(i64),
    Float(f64),
}

struct NumVisitor;

impl<'de> Visitor<'de> for NumVisitor {
    type Value = Option<Num>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number or a numeric string")
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(Num::Int(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        match i64::try_from(v) {
            Ok(v) => Ok(Some(Num::Int(v))),
            Err(_) => Ok(Some(Num::Float(v as f64))),
        }
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Some(Num::Float(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        let t = v.trim();
        if t.is_empty() {
            return Ok(None);
        }
        if let Ok(i) = t.parse::<i64>() {
            return Ok(Some(Num::Int(i)));
        }
        match t.parse::<f64>() {
            Ok(f) => Ok(Some(Num::Float(f))),
            Err(_) => Err(E::custom(format!(
                "expected a number or a numeric string, got \"{}\"",
                clip(v, 24)
            ))),
        }
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

fn num<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Num>, D::Error> {
    d.deserialize_any(NumVisitor)
}

fn to_f64(n: Num) -> f64 {
    match n {
        Num::Int(i) => i as f64,
        Num::Float(f) => f,
    }
}

fn to_i64<E: de::Error>(n: Num) -> Result<i64, E> {
    match n {
        Num::Int(i) => Ok(i),
        Num::Float(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(f as i64),
        Num::Float(_) => Err(E::custom("expected a whole number")),
    }
}

pub(super) fn f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    num(d)?
        .map(to_f64)
        .ok_or_else(|| de::Error::custom("expected a number, got nothing"))
}

pub(super) fn f64_or_zero<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(num(d)?.map(to_f64).unwrap_or(0.0))
}

pub(super) fn opt_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(num(d)?.map(to_f64))
}

pub(super) fn i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    match num(d)? {
        Some(n) => to_i64(n),
        None => Err(de::Error::custom("expected a whole number, got nothing")),
    }
}

pub(super) fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    num(d)?.map(to_i64).transpose()
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// A string; numbers are accepted and kept in their decimal form.
pub(super) fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    d.deserialize_any(TextVisitor)?
        .ok_or_else(|| de::Error::custom("expected a string, got null"))
}

pub(super) fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    d.deserialize_any(TextVisitor)
}

/// Any form [`super::timestamp::parse`] accepts (RFC 3339, ISO 8601 variants, Unix epoch
/// seconds or milliseconds as numbers or numeric strings); null or "" means now.
pub(super) fn timestamp<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    let Some(raw) = d.deserialize_any(TextVisitor)? else {
        return Ok(Utc::now());
    };
    if raw.trim().is_empty() {
        return Ok(Utc::now());
    }
    super::timestamp::parse(&raw).ok_or_else(|| {
        de::Error::custom(format!(
            "expected an RFC 3339 timestamp or Unix epoch seconds/milliseconds, got \"{}\"",
            clip(raw.trim(), 40)
        ))
    })
}

/// A server-set time (`received_at`): a value that is not one reads as absent rather than
/// refusing the frame (the tracker overwrites it on every frame it reads anyway).
pub(super) fn lenient_time<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<DateTime<Utc>>, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    Ok(value
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc)))
}

/// A server-set whole number (`clock_offset_ms`), read like [`lenient_time`].
pub(super) fn lenient_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    Ok(value.as_i64())
}
