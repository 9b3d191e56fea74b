//! Frames of the plugin's current releases that describe the character itself: `vitals`,
//! `character_stats` (the character sheet) and `portal`.
//!
//! Their exact field names are not published, so parsing is tolerant: every field is optional
//! except the character's name, numbers may come as numeric strings, common alternative names are
//! accepted (`health_pct` for `health_percentage`, `xp` for `total_xp`, ...), and unknown fields
//! are ignored. What is present is still validated: a field that is there but is not a number,
//! or is out of range, is rejected with its name.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    FrameError, MAX_NAME_CHARS, check_measure, check_name, check_present, check_short,
    check_timestamp, flex, now,
};

/// Experience totals above this are rejected (the game's maximum is about 1.9e11).
pub(super) const MAX_XP: i64 = 1_000_000_000_000_000;

/// Health, stamina and mana (and vitae), sent every few seconds by current plugins. After
/// parsing, each `*_percentage` is filled from `*_current / *_max` when the plugin sent only those.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vitals {
    pub character_name: String,
    #[serde(default = "now", deserialize_with = "flex::timestamp")]
    pub timestamp: DateTime<Utc>,
    #[serde(
        default,
        alias = "health_pct",
        alias = "health_percent",
        deserialize_with = "flex::opt_f64",
        skip_serializing_if = "Option::is_none"
    )]
    pub health_percentage: Option<f64>,
    #[serde(
        default,
        alias = "stamina_pct",
        alias = "stamina_percent",
        deserialize_with = "flex::opt_f64",
        skip_serializing_if = "Option::is_none"
    )]
    pub stamina_percentage: Option<f64>,
    #[serde(
        default,
        alias = "mana_pct",
        alias = "mana_percent",
        deserialize_with = "flex::opt_f64",
        skip_serializing_if = "Option::is_none"
    )]
    pub mana_percentage: Option<f64>,
    /// Vitae penalty, in percent (100 means none).
    #[serde(
        default,
        alias = "vitae_percentage",
        alias = "vitae_pct",
        alias = "vitae_percent",
        deserialize_with = "flex::opt_f64",
        skip_serializing_if = "Option::is_none"
    )]
    pub vitae: Option<f64>,
    #[serde(
        default,
        deserialize_with = "flex::opt_f64",
        skip_serializing_if = "Option::is_none"
    )]
    pub health_current: Option<f64>,
    #[serde(
        default,
        deserialize_with = "flex::opt_f64",
        skip_serializing_if = "Option::is_none"
    )]
    pub health_max: Option<f64>,
    #[serde(
        default,
        deserialize_with = "flex::opt_f64",
        skip_serializing_if = "Option::is_none"
    )]
    pub stamina_current: Option<f64>,
    #[serde(
        default,
        deserialize_with = "flex::opt_f64",
        skip_serializing_if = "Option::is_none"
    )]
    pub stamina_max: Option<f64>,
    #[serde(
        default,
        deserialize_with = "flex::opt_f64",
        skip_serializing_if = "Option::is_none"
    )]
    pub mana_current: Option<f64>,
    #[serde(
        default,
        deserialize_with = "flex::opt_f64",
        skip_serializing_if = "Option::is_none"
    )]
    pub mana_max: Option<f64>,
}

impl Vitals {
    /// Validates every value that is present and fills missing percentages from current/max.
    pub(super) fn validate(&mut self) -> Result<(), FrameError> {
        check_name("character_name", &self.character_name)?;
        check_timestamp(&self.timestamp)?;
        check_present(
            &[
                ("health_current", self.health_current),
                ("health_max", self.health_max),
                ("stamina_current", self.stamina_current),
                ("stamina_max", self.stamina_max),
                ("mana_current", self.mana_current),
                ("mana_max", self.mana_max),
            ],
            check_measure,
        )?;
        check_present(
            &[
                ("health_percentage", self.health_percentage),
                ("stamina_percentage", self.stamina_percentage),
                ("mana_percentage", self.mana_percentage),
                ("vitae", self.vitae),
            ],
            check_percentage,
        )?;
        self.health_percentage = self
            .health_percentage
            .or_else(|| ratio(self.health_current, self.health_max));
        self.stamina_percentage = self
            .stamina_percentage
            .or_else(|| ratio(self.stamina_current, self.stamina_max));
        self.mana_percentage = self
            .mana_percentage
            .or_else(|| ratio(self.mana_current, self.mana_max));
        Ok(())
    }
}

/// `current / max` in percent, when both are known and `max` is positive.
fn ratio(current: Option<f64>, max: Option<f64>) -> Option<f64> {
    match (current, max) {
        (Some(c), Some(m)) if m > 0.0 => Some((c / m * 100.0).clamp(0.0, 100.0)),
        _ => None,
    }
}

fn check_percentage(field: &str, value: f64) -> Result<(), FrameError> {
    // A little over 100 is tolerated (rounding, buffs above the base maximum); more is nonsense.
    if !value.is_finite() || !(0.0..=1_000.0).contains(&value) {
        return Err(FrameError::field(field, "must be a percentage (0 to 100)"));
    }
    Ok(())
}

/// A character's allegiance, as far as the plugin reports it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Allegiance {
    #[serde(
        default,
        deserialize_with = "flex::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub name: Option<String>,
    #[serde(
        default,
        deserialize_with = "flex::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub monarch: Option<String>,
    #[serde(
        default,
        deserialize_with = "flex::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub patron: Option<String>,
    #[serde(
        default,
        deserialize_with = "flex::opt_i64",
        skip_serializing_if = "Option::is_none"
    )]
    pub rank: Option<i64>,
}

/// The `character_stats` frame: the character sheet, sent at login and every ten minutes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CharacterSheet {
    pub character_name: String,
    #[serde(default = "now", deserialize_with = "flex::timestamp")]
    pub timestamp: DateTime<Utc>,
    #[serde(
        default,
        deserialize_with = "flex::opt_i64",
        skip_serializing_if = "Option::is_none"
    )]
    pub level: Option<i64>,
    #[serde(
        default,
        alias = "xp",
        alias = "total_experience",
        deserialize_with = "flex::opt_i64",
        skip_serializing_if = "Option::is_none"
    )]
    pub total_xp: Option<i64>,
    #[serde(
        default,
        alias = "unassigned_experience",
        deserialize_with = "flex::opt_i64",
        skip_serializing_if = "Option::is_none"
    )]
    pub unassigned_xp: Option<i64>,
    #[serde(
        default,
        alias = "luminance",
        deserialize_with = "flex::opt_i64",
        skip_serializing_if = "Option::is_none"
    )]
    pub luminance_earned: Option<i64>,
    #[serde(
        default,
        deserialize_with = "flex::opt_i64",
        skip_serializing_if = "Option::is_none"
    )]
    pub luminance_total: Option<i64>,
    #[serde(
        default,
        alias = "current_title",
        deserialize_with = "flex::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub title: Option<String>,
    #[serde(
        default,
        alias = "heritage",
        deserialize_with = "flex::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub race: Option<String>,
    #[serde(
        default,
        deserialize_with = "allegiance",
        skip_serializing_if = "Option::is_none"
    )]
    pub allegiance: Option<Allegiance>,
    /// The flat form some builds send instead of an `allegiance` object; folded into it.
    #[serde(default, deserialize_with = "flex::opt_string", skip_serializing)]
    pub allegiance_name: Option<String>,
    /// Attributes as the plugin sends them (an object or a list), kept verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<serde_json::Value>,
    /// Skills as the plugin sends them (an object or a list), kept verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skills: Option<serde_json::Value>,
}

impl CharacterSheet {
    pub(super) fn validate(&mut self) -> Result<(), FrameError> {
        check_name("character_name", &self.character_name)?;
        check_timestamp(&self.timestamp)?;
        if let Some(level) = self.level
            && !(0..=10_000).contains(&level)
        {
            return Err(FrameError::field("level", "must be between 0 and 10000"));
        }
        for (field, value) in [
            ("total_xp", self.total_xp),
            ("unassigned_xp", self.unassigned_xp),
            ("luminance_earned", self.luminance_earned),
            ("luminance_total", self.luminance_total),
        ] {
            if let Some(v) = value
                && !(0..=MAX_XP).contains(&v)
            {
                return Err(FrameError::field(
                    field,
                    format!("must be between 0 and {MAX_XP}"),
                ));
            }
        }
        for (field, value) in [("title", &self.title), ("race", &self.race)] {
            if let Some(v) = value {
                check_short(field, v, false)?;
            }
        }
        if let Some(name) = self.allegiance_name.take() {
            self.allegiance.get_or_insert_with(Allegiance::default).name = Some(name);
        }
        if let Some(a) = &self.allegiance {
            for (field, value) in [
                ("allegiance.name", &a.name),
                ("allegiance.monarch", &a.monarch),
                ("allegiance.patron", &a.patron),
            ] {
                if let Some(v) = value
                    && (v.chars().count() > MAX_NAME_CHARS || v.chars().any(char::is_control))
                {
                    return Err(FrameError::field(
                        field,
                        format!("at most {MAX_NAME_CHARS} characters, no control characters"),
                    ));
                }
            }
        }
        for (field, value) in [("attributes", &self.attributes), ("skills", &self.skills)] {
            if let Some(v) = value
                && !(v.is_object() || v.is_array() || v.is_null())
            {
                return Err(FrameError::field(field, "must be an object or a list"));
            }
        }
        if self
            .attributes
            .as_ref()
            .is_some_and(serde_json::Value::is_null)
        {
            self.attributes = None;
        }
        if self.skills.as_ref().is_some_and(serde_json::Value::is_null) {
            self.skills = None;
        }
        Ok(())
    }

    /// The sheet without attributes and skills: what live state, snapshots and browsers carry.
    pub fn summary(&self) -> Self {
        Self {
            attributes: None,
            skills: None,
            ..self.clone()
        }
    }
}

/// `allegiance` as an object (`{"name": ..., "monarch": ...}`) or just its name.
fn allegiance<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Allegiance>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        Name(String),
        Full(Allegiance),
        Nothing(()),
    }
    Ok(match Form::deserialize(d)? {
        Form::Name(name) if name.trim().is_empty() => None,
        Form::Name(name) => Some(Allegiance {
            name: Some(name),
            ..Allegiance::default()
        }),
        Form::Full(a) => Some(a),
        Form::Nothing(()) => None,
    })
}

/// The character went through a portal (or recalled): its trail breaks here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Portal {
    pub character_name: String,
    #[serde(default = "now", deserialize_with = "flex::timestamp")]
    pub timestamp: DateTime<Utc>,
    /// When the tracker read the frame (its own clock). Set by the tracker on every frame it
    /// reads; a value sent by a plugin is replaced.
    #[serde(
        default,
        deserialize_with = "flex::lenient_time",
        skip_serializing_if = "Option::is_none"
    )]
    pub received_at: Option<DateTime<Utc>>,
    /// The plugin's clock minus the tracker's when the frame was read, in milliseconds (network
    /// delay included). Set by the tracker like `received_at`.
    #[serde(
        default,
        deserialize_with = "flex::lenient_i64",
        skip_serializing_if = "Option::is_none"
    )]
    pub clock_offset_ms: Option<i64>,
    /// The portal's or destination's name, when the plugin says.
    #[serde(
        default,
        alias = "name",
        alias = "destination",
        alias = "portal",
        deserialize_with = "flex::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub portal_name: Option<String>,
    #[serde(
        default,
        deserialize_with = "flex::opt_f64",
        skip_serializing_if = "Option::is_none"
    )]
    pub ew: Option<f64>,
    #[serde(
        default,
        deserialize_with = "flex::opt_f64",
        skip_serializing_if = "Option::is_none"
    )]
    pub ns: Option<f64>,
    #[serde(
        default,
        deserialize_with = "flex::opt_f64",
        skip_serializing_if = "Option::is_none"
    )]
    pub z: Option<f64>,
}

impl Portal {
    pub(super) fn validate(&mut self) -> Result<(), FrameError> {
        check_name("character_name", &self.character_name)?;
        check_timestamp(&self.timestamp)?;
        if let Some(name) = &self.portal_name {
            if name.trim().is_empty() {
                self.portal_name = None;
            } else {
                check_short("portal_name", name, false)?;
            }
        }
        // A position is used only when it is complete and on the map.
        if let (Some(ew), Some(ns)) = (self.ew, self.ns) {
            super::check_position(ew, ns, self.z.unwrap_or(0.0))?;
        } else {
            self.ew = None;
            self.ns = None;
            self.z = None;
        }
        Ok(())
    }
}
