//! The typed profile views on SQLite: `bi_profiles`, `bi_profiles_history` and
//! `bi_events_with_profile` (bodies from [`typed_profile_views`]), rebuilt in the load's
//! transaction with the typed event views.

use std::collections::{HashMap, HashSet};

use super::ident;
use crate::warehouse::catalog::Catalog;
use crate::warehouse::profile_views::{
    EVENTS_WITH_PROFILE_VIEW, ProfileViews, typed_profile_views,
};
use crate::warehouse::typed_views::{TYPED_ALL_EVENTS_VIEW, TypedDialect, typed_view_name};

/// The script that (re)creates the typed profile views, or `""` when none is due. Due when
/// the snapshot table is in `stale` (a column added, a kind widened or a pin changed), a typed
/// event view was rebuilt (`event_views_rebuilt`: then `bi_all_events` was too, where it is a
/// view), or one of them is missing (a file from before them). `existing` maps each `bi_*` relation to its type; a relation of a view's name
/// that is no view (a table from before the prefix was reserved) keeps it, and no typed profile
/// view is built (they read each other), nor `bi_events_with_profile` without a
/// `bi_all_events` view.
pub(super) fn typed_profile_views_script(
    catalog: &Catalog,
    d: &TypedDialect<'_>,
    existing: &HashMap<String, String>,
    stale: &HashSet<String>,
    event_views_rebuilt: bool,
) -> String {
    let Some(snapshots) = catalog.profile_snapshots() else {
        return String::new();
    };
    let typed_relation = |name: &str| ident(&typed_view_name(name));
    let Some(ProfileViews { views }) = typed_profile_views(catalog, d, &typed_relation) else {
        return String::new();
    };
    let kind_of = |view: &str| existing.get(&typed_view_name(view)).map(String::as_str);
    if views
        .iter()
        .any(|(view, _)| !matches!(kind_of(view), Some("view") | None))
    {
        tracing::warn!(
            "A relation named like a typed profile view is not a view: no typed profile views."
        );
        return String::new();
    }
    let due = event_views_rebuilt
        || stale.contains(&snapshots.name)
        || views.iter().any(|(view, _)| kind_of(view).is_none());
    if !due {
        return String::new();
    }
    let events_readable = match existing.get(TYPED_ALL_EVENTS_VIEW).map(String::as_str) {
        Some("view") => true,
        None => event_views_rebuilt && !catalog.is_empty(),
        Some(_) => false,
    };
    let mut script = format!(
        "DROP VIEW IF EXISTS {};\n",
        typed_relation(EVENTS_WITH_PROFILE_VIEW)
    );
    for (view, body) in views {
        if view == EVENTS_WITH_PROFILE_VIEW && !events_readable {
            continue;
        }
        script.push_str(&format!(
            "DROP VIEW IF EXISTS {0};\nCREATE VIEW {0} AS\n{body};\n",
            typed_relation(view)
        ));
    }
    script
}
