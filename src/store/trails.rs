//! Trails as the query API serves them: points grouped by character in time order, thinned to
//! one per step, and broken where a character teleported.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::model::TrailPoint;

/// Most teleports read to break one trails answer; beyond it, later teleports leave trails
/// joined rather than the query growing without bound.
pub(crate) const MAX_TRAIL_BREAKS: i64 = 100_000;

/// Marks the first point after each teleport in trails grouped by character in time order.
/// `portals` holds (character, time) pairs in any order.
pub(crate) fn mark_trail_breaks(points: &mut [TrailPoint], portals: &[(String, DateTime<Utc>)]) {
    if portals.is_empty() {
        return;
    }
    let mut by_character: HashMap<&str, Vec<DateTime<Utc>>> = HashMap::new();
    for (name, at) in portals {
        by_character.entry(name).or_default().push(*at);
    }
    for times in by_character.values_mut() {
        times.sort_unstable();
    }
    for i in 1..points.len() {
        let (before, after) = points.split_at_mut(i);
        let (prev, point) = (&before[i - 1], &mut after[0]);
        if prev.character_name != point.character_name {
            continue;
        }
        let Some(times) = by_character.get(&*point.character_name) else {
            continue;
        };
        // Any teleport in (prev, point]?
        let first_after_prev = times.partition_point(|t| *t <= prev.timestamp);
        if times
            .get(first_after_prev)
            .is_some_and(|t| *t <= point.timestamp)
        {
            point.segment_start = true;
        }
    }
}

/// Builds trails from points arriving in time order: groups them by character and, with a step,
/// keeps only the first point of each character's `step`-second bucket.
#[derive(Debug)]
pub(crate) struct TrailThinner {
    step: Option<i64>,
    limit: usize,
    kept: usize,
    trails: std::collections::BTreeMap<std::sync::Arc<str>, (i64, Vec<TrailPoint>)>,
}

impl TrailThinner {
    pub(crate) fn new(step: Option<i64>, limit: i64) -> Self {
        Self {
            step: step.filter(|s| *s > 0),
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            kept: 0,
            trails: std::collections::BTreeMap::new(),
        }
    }

    /// Takes one point; false once the limit of kept points is reached.
    pub(crate) fn offer(&mut self, point: TrailPoint) -> bool {
        let bucket = self
            .step
            .map_or(i64::MIN, |s| point.timestamp.timestamp().div_euclid(s));
        let trail = match self.trails.get_mut(&*point.character_name) {
            Some(trail) => trail,
            None => self
                .trails
                .entry(point.character_name.clone())
                .or_insert((i64::MIN, Vec::new())),
        };
        if self.step.is_some() && !trail.1.is_empty() && trail.0 == bucket {
            return true;
        }
        trail.0 = bucket;
        trail.1.push(point);
        self.kept += 1;
        self.kept < self.limit
    }

    /// The trails, by character name, each in time order.
    pub(crate) fn finish(self) -> Vec<TrailPoint> {
        self.trails.into_values().flat_map(|(_, v)| v).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(name: &str, secs: i64) -> TrailPoint {
        TrailPoint {
            character_name: name.into(),
            timestamp: DateTime::from_timestamp(secs, 0).unwrap_or_default(),
            ew: secs as f64,
            ns: 0.0,
            z: 0.0,
            segment_start: false,
        }
    }

    #[test]
    fn a_teleport_breaks_the_trail_at_the_next_point_of_that_character_only() {
        let mut points: Vec<TrailPoint> = [("a", 10), ("a", 20), ("a", 30), ("b", 10), ("b", 30)]
            .into_iter()
            .map(|(n, s)| point(n, s))
            .collect();
        let at = |s| DateTime::from_timestamp(s, 0).unwrap_or_default();
        mark_trail_breaks(&mut points, &[("a".into(), at(25)), ("c".into(), at(15))]);
        let breaks: Vec<bool> = points.iter().map(|p| p.segment_start).collect();
        assert_eq!(breaks, [false, false, true, false, false]);
        // A teleport exactly at a point's time breaks before that point.
        mark_trail_breaks(&mut points, &[("b".into(), at(30))]);
        assert!(points[4].segment_start);
    }

    #[test]
    fn trails_keep_the_first_point_per_step_and_group_by_character() {
        let mut t = TrailThinner::new(Some(5), 100);
        for (name, secs) in [
            ("b", 100),
            ("a", 101),
            ("b", 102),
            ("a", 104),
            ("a", 105),
            ("b", 110),
        ] {
            assert!(t.offer(point(name, secs)));
        }
        let got: Vec<(String, f64)> = t
            .finish()
            .into_iter()
            .map(|p| (p.character_name.to_string(), p.ew))
            .collect();
        let want = [("a", 101.0), ("a", 105.0), ("b", 100.0), ("b", 110.0)];
        assert_eq!(
            got,
            want.iter()
                .map(|(n, e)| (n.to_string(), *e))
                .collect::<Vec<_>>()
        );
        let mut capped = TrailThinner::new(None, 2);
        assert!(capped.offer(point("a", 1)));
        assert!(!capped.offer(point("a", 2)));
    }
}
