//! One simulated character: where it is, what it does, and the frames its plugin would send.
//!
//! Characters travel between real towns, hunt near them (kills rise, kills per hour follows),
//! die now and then, report spawns and the odd rare, chat, and obey `/vt stop` / `/vt start`.

use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

/// A town from `static/data/towns.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Town {
    pub name: String,
    pub ns: f64,
    pub ew: f64,
}

/// The towns the UI labels, shared with the simulator so characters go where the map says towns
/// are.
pub fn towns() -> &'static [Town] {
    #[derive(Deserialize)]
    struct File {
        towns: Vec<Town>,
    }
    static TOWNS: OnceLock<Vec<Town>> = OnceLock::new();
    TOWNS.get_or_init(|| {
        serde_json::from_str::<File>(include_str!("../../static/data/towns.json"))
            .map(|f| f.towns)
            .unwrap_or_else(|err| {
                tracing::error!(%err, "static/data/towns.json is invalid");
                vec![Town {
                    name: "Holtburg".into(),
                    ns: 42.1,
                    ew: 33.6,
                }]
            })
    })
}

const MOBS: [&str; 12] = [
    "Drudge Robber",
    "Mosswart Worshipper",
    "Olthoi Soldier",
    "Banderling Guard",
    "Tusker Slave",
    "Mattekar",
    "Shadow Child",
    "Sclavus Bandit",
    "Gromnie",
    "Lugian Grunt",
    "Mite Scion",
    "Wasp",
];
const RARES: [&str; 8] = [
    "Pearl of Blood Drinking",
    "Gem of Knowledge",
    "Shimmering Skeleton Key",
    "Staff of All Aphus",
    "Ring of Channeling",
    "Dragonspine Bow",
    "Perennial Argenory Dye",
    "Medicated Health Kit",
];
const CHAT: [&str; 8] = [
    "anyone up for a fellow?",
    "rare!",
    "buffing in town, brb",
    "selling peas, cheap",
    "vtank stuck on a door again",
    "gz!",
    "heading to the next spawn",
    "lag spike, anyone else?",
];

/// What the character is doing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activity {
    /// Running towards a town.
    Traveling { to_ew: f64, to_ns: f64 },
    /// Hunting around a spot for `left` more seconds.
    Hunting {
        spot_ew: f64,
        spot_ns: f64,
        left: f64,
    },
    /// Dead, back in `left` seconds.
    Dead { left: f64 },
    /// Stopped by `/vt stop` until `/vt start`.
    Stopped,
}

/// A simulated character and its plugin's counters.
#[derive(Debug, Clone)]
pub struct Character {
    pub name: String,
    pub tag: String,
    pub session_id: String,
    pub ew: f64,
    pub ns: f64,
    pub z: f64,
    pub kills: i64,
    pub deaths: i64,
    pub total_deaths: i64,
    pub rares_found: i64,
    pub tapers: i64,
    pub online: Duration,
    pub activity: Activity,
    /// Health, stamina and mana, in percent.
    pub vitals: [f64; 3],
    pub level: i64,
    pub total_xp: i64,
    /// Simulated seconds until the next `character_stats` frame (0: at the next step).
    sheet_due: f64,
    /// What to resume after `/vt start`.
    paused: Option<Activity>,
    rng: fastrand::Rng,
}

/// Map units per second while running (about 20 m/s, as a fast runner).
const RUN_SPEED: f64 = 0.08;

impl Character {
    /// Character number `index` of a run seeded with `seed`.
    pub fn new(index: usize, seed: u64) -> Self {
        let mut rng =
            fastrand::Rng::with_seed(seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let towns = towns();
        let home = &towns[rng.usize(..towns.len())];
        let session_id = format!("sim-{:016x}", rng.u64(..));
        let mut c = Self {
            name: format!("Sim {index:04}"),
            tag: ["Mosswart Guild", "Order of the Drudge", "Free Agents"][index % 3].to_owned(),
            session_id,
            ew: home.ew + rng.f64() * 2.0 - 1.0,
            ns: home.ns + rng.f64() * 2.0 - 1.0,
            z: 10.0 + rng.f64() * 50.0,
            kills: 0,
            deaths: 0,
            total_deaths: rng.i64(0..200),
            rares_found: 0,
            tapers: rng.i64(100..2000),
            online: Duration::ZERO,
            activity: Activity::Stopped,
            vitals: [100.0; 3],
            level: rng.i64(20..275),
            total_xp: 0,
            sheet_due: 0.0,
            paused: None,
            rng,
        };
        c.total_xp = c.level * c.level * c.level * 10_000;
        c.activity = c.new_hunt();
        c
    }

    fn new_hunt(&mut self) -> Activity {
        Activity::Hunting {
            spot_ew: self.ew,
            spot_ns: self.ns,
            left: 60.0 + self.rng.f64() * 240.0,
        }
    }

    /// Sets off for another town: running there, or (a third of the time, and whenever it is
    /// far) taking a portal, which moves the character at once and says so in a `portal` frame.
    fn next_town(&mut self, frames: &mut Vec<Value>, now: DateTime<Utc>) -> Activity {
        let towns = towns();
        let town = &towns[self.rng.usize(..towns.len())];
        let (to_ew, to_ns) = (
            town.ew + self.rng.f64() * 4.0 - 2.0,
            town.ns + self.rng.f64() * 4.0 - 2.0,
        );
        let far = (to_ew - self.ew).hypot(to_ns - self.ns) > 40.0;
        if far || self.rng.f64() < 1.0 / 3.0 {
            frames.push(json!({
                "type": "portal",
                "character_name": self.name,
                "portal_name": format!("{} Portal", town.name),
                "timestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "ew": round4(self.ew),
                "ns": round4(self.ns),
                "z": round4(self.z),
            }));
            self.ew = to_ew.clamp(-101.0, 101.0);
            self.ns = to_ns.clamp(-101.0, 101.0);
            return self.new_hunt();
        }
        Activity::Traveling { to_ew, to_ns }
    }

    /// The VTank state the plugin would report.
    pub fn vt_state(&self) -> &'static str {
        match self.activity {
            Activity::Traveling { .. } => "Navigating",
            Activity::Hunting { .. } => "Combat",
            Activity::Dead { .. } => "Dead",
            Activity::Stopped => "Idle",
        }
    }

    /// Kills per hour over the session so far.
    pub fn kills_per_hour(&self) -> f64 {
        let hours = self.online.as_secs_f64() / 3600.0;
        if hours < 1.0 / 60.0 {
            0.0
        } else {
            (self.kills as f64 / hours).round()
        }
    }

    /// Advances the simulation by `dt` (scaled by `speed`) and returns the extra frames (spawns,
    /// rares, chat) that happened meanwhile.
    pub fn step(&mut self, dt: Duration, speed: f64, now: DateTime<Utc>) -> Vec<Value> {
        self.online += dt;
        let secs = dt.as_secs_f64() * speed;
        let mut frames = Vec::new();
        self.activity = match self.activity {
            Activity::Stopped => Activity::Stopped,
            Activity::Dead { left } if left > secs => Activity::Dead { left: left - secs },
            Activity::Dead { .. } => {
                self.vitals = [100.0; 3];
                self.new_hunt()
            }
            Activity::Traveling { to_ew, to_ns } => {
                let (dx, dy) = (to_ew - self.ew, to_ns - self.ns);
                let dist = (dx * dx + dy * dy).sqrt();
                let stride = RUN_SPEED * secs;
                if dist <= stride {
                    self.ew = to_ew;
                    self.ns = to_ns;
                    self.new_hunt()
                } else {
                    self.ew += dx / dist * stride;
                    self.ns += dy / dist * stride;
                    Activity::Traveling { to_ew, to_ns }
                }
            }
            Activity::Hunting {
                spot_ew,
                spot_ns,
                left,
            } => {
                // Wander a little around the spot; a kill every ~6 s; spawns keep coming.
                self.ew = (spot_ew + (self.ew - spot_ew) * 0.8 + (self.rng.f64() - 0.5) * 0.1)
                    .clamp(-101.0, 101.0);
                self.ns = (spot_ns + (self.ns - spot_ns) * 0.8 + (self.rng.f64() - 0.5) * 0.1)
                    .clamp(-101.0, 101.0);
                let expected_kills = secs / 6.0;
                let kills = expected_kills.floor() as i64
                    + i64::from(self.rng.f64() < expected_kills.fract());
                self.kills += kills;
                self.total_xp += kills * 40_000 * self.level;
                self.tapers = (self.tapers - kills / 3).max(0);
                // Fighting costs health, stamina and mana; healing and resting bring them back.
                for (i, v) in self.vitals.iter_mut().enumerate() {
                    let swing = (self.rng.f64() - 0.55) * 12.0 * (i as f64 + 1.0) / 2.0;
                    *v = (*v + swing * secs / 2.0).clamp(5.0, 100.0);
                }
                if self.rng.f64() < secs / 12.0 {
                    frames.push(self.spawn_frame(now));
                }
                if kills > 0 && self.rng.f64() < 0.002 * kills as f64 {
                    self.rares_found += 1;
                    frames.push(self.rare_frame(now));
                }
                if self.rng.f64() < secs / 1800.0 {
                    self.deaths += 1;
                    self.total_deaths += 1;
                    self.vitals = [0.0, 0.0, 0.0];
                    Activity::Dead { left: 20.0 }
                } else if left > secs {
                    Activity::Hunting {
                        spot_ew,
                        spot_ns,
                        left: left - secs,
                    }
                } else {
                    self.next_town(&mut frames, now)
                }
            }
        };
        if self.rng.f64() < secs / 300.0 {
            frames.push(self.chat_frame(now));
        }
        if self.rng.f64() < secs / 4.0 {
            frames.push(self.vitals_frame(now));
        }
        self.sheet_due -= secs;
        if self.sheet_due <= 0.0 {
            // At login and every ten minutes, as the plugin does.
            self.sheet_due = 600.0;
            if self.total_xp > (self.level + 1).pow(3) * 10_000 {
                self.level += 1;
            }
            frames.push(self.sheet_frame(now));
        }
        frames
    }

    /// Vitals as current plugins send them; the timestamp as Unix epoch milliseconds, a form
    /// some plugin builds use.
    fn vitals_frame(&self, now: DateTime<Utc>) -> Value {
        let [health, stamina, mana] = self.vitals.map(|v| v.round());
        json!({
            "type": "vitals",
            "character_name": self.name,
            "timestamp": now.timestamp_millis(),
            "health_percentage": health,
            "stamina_percentage": stamina.to_string(),
            "mana_percentage": mana,
            "health_current": (health * 4.0).round(),
            "health_max": 400,
            "vitae": 100,
        })
    }

    /// The character sheet (`character_stats`), with numbers as strings where the plugin sends
    /// them so.
    fn sheet_frame(&self, now: DateTime<Utc>) -> Value {
        let titles = [
            "Adventurer",
            "Mosswart Masher",
            "Drudge Slayer",
            "Tusker Tamer",
        ];
        json!({
            "type": "character_stats",
            "character_name": self.name,
            "timestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "level": self.level,
            "total_xp": self.total_xp.to_string(),
            "unassigned_xp": "0",
            "luminance_earned": self.level * 1_000,
            "luminance_total": 1_500_000,
            "title": titles[self.level as usize % titles.len()],
            "race": "Aluvian",
            "allegiance": {"name": self.tag, "monarch": "Sim Monarch", "rank": 3},
            "attributes": {"strength": 100, "endurance": 100, "coordination": 100,
                           "quickness": 100, "focus": 100, "self": 100},
            "skills": {"war_magic": 400, "melee_defense": 350},
        })
    }

    /// Applies a command from a browser; returns whether it was understood.
    pub fn command(&mut self, command: &str) -> bool {
        match command.trim() {
            "/vt stop" => {
                if self.activity != Activity::Stopped {
                    self.paused = Some(self.activity);
                    self.activity = Activity::Stopped;
                }
                true
            }
            "/vt start" => {
                if self.activity == Activity::Stopped {
                    self.activity = self.paused.take().unwrap_or_else(|| self.new_hunt());
                }
                true
            }
            _ => false,
        }
    }

    /// The telemetry frame, with the fields the real plugin sends as strings sent as strings.
    pub fn telemetry_frame(&self, now: DateTime<Utc>) -> Value {
        let secs = self.online.as_secs();
        let onlinetime = format!(
            "{:02}.{:02}:{:02}:{:02}",
            secs / 86_400,
            secs / 3600 % 24,
            secs / 60 % 60,
            secs % 60
        );
        json!({
            "type": "telemetry",
            "character_name": self.name,
            "char_tag": self.tag,
            "session_id": self.session_id,
            "timestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "ew": round4(self.ew),
            "ns": round4(self.ns),
            "z": round4(self.z),
            "kills": self.kills,
            "kills_per_hour": format!("{}", self.kills_per_hour()),
            "onlinetime": onlinetime,
            "deaths": self.deaths.to_string(),
            "total_deaths": self.total_deaths.to_string(),
            "rares_found": self.rares_found,
            "prismatic_taper_count": self.tapers.to_string(),
            "vt_state": self.vt_state(),
            "mem_mb": 650.0 + (secs % 100) as f64,
            "cpu_pct": 2.5,
            "mem_handles": 1800,
            "latency_ms": 35,
        })
    }

    fn spawn_frame(&mut self, now: DateTime<Utc>) -> Value {
        let mob = MOBS[self.rng.usize(..MOBS.len())];
        json!({
            "type": "spawn",
            "character_name": self.name,
            "mob": mob,
            "timestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "ew": round4((self.ew + (self.rng.f64() - 0.5) * 0.4).clamp(-101.0, 101.0)),
            "ns": round4((self.ns + (self.rng.f64() - 0.5) * 0.4).clamp(-101.0, 101.0)),
            "z": round4(self.z),
        })
    }

    fn rare_frame(&mut self, now: DateTime<Utc>) -> Value {
        json!({
            "type": "rare",
            "character_name": self.name,
            "name": RARES[self.rng.usize(..RARES.len())],
            "timestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "ew": round4(self.ew),
            "ns": round4(self.ns),
            "z": round4(self.z),
        })
    }

    fn chat_frame(&mut self, now: DateTime<Utc>) -> Value {
        json!({
            "type": "chat",
            "character_name": self.name,
            "text": format!("[General] {} says, \"{}\"", self.name, CHAT[self.rng.usize(..CHAT.len())]),
            "color": self.rng.i64(0..16),
            "timestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        })
    }
}

fn round4(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{FrameType, PluginFrame, parse_plugin_frame};

    #[test]
    fn every_frame_the_simulator_sends_parses() {
        let mut kinds = std::collections::HashSet::new();
        for i in 0..50 {
            let mut c = Character::new(i, 7);
            for _ in 0..400 {
                let now = Utc::now();
                for frame in c.step(Duration::from_secs(2), 5.0, now) {
                    let parsed = parse_plugin_frame(&frame.to_string())
                        .unwrap_or_else(|e| panic!("{frame} rejected: {e}"));
                    kinds.insert(parsed.kind());
                }
                let t = c.telemetry_frame(now);
                assert!(t["kills_per_hour"].is_string() && t["deaths"].is_string());
                let Ok(PluginFrame::Telemetry(parsed)) = parse_plugin_frame(&t.to_string()) else {
                    panic!("telemetry rejected: {t}")
                };
                assert_eq!(parsed.kills, c.kills);
            }
        }
        for kind in [
            FrameType::Spawn,
            FrameType::Rare,
            FrameType::Chat,
            FrameType::Vitals,
            FrameType::CharacterStats,
            FrameType::Portal,
        ] {
            assert!(
                kinds.contains(&Some(kind)),
                "the simulation produced no {kind:?} frame"
            );
        }
    }

    #[test]
    fn kills_only_rise_within_a_session_and_vt_commands_work() {
        let mut c = Character::new(1, 1);
        let mut last = 0;
        for _ in 0..200 {
            c.step(Duration::from_secs(2), 1.0, Utc::now());
            assert!(c.kills >= last);
            last = c.kills;
        }
        assert!(c.command("/vt stop"));
        assert_eq!(c.vt_state(), "Idle");
        let (ew, ns, kills) = (c.ew, c.ns, c.kills);
        c.step(Duration::from_secs(60), 1.0, Utc::now());
        assert_eq!(
            (c.ew, c.ns, c.kills),
            (ew, ns, kills),
            "a stopped character stays put"
        );
        assert!(c.command("/vt start"));
        assert_ne!(c.vt_state(), "Idle");
        assert!(!c.command("/dance"));
    }
}
