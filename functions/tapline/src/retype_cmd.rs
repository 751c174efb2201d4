//! `tapline retype`: each column's kind inferred again from its values (SQLite), the typed
//! views rebuilt, and what changed printed.

use tapline::warehouse::column_kinds::ColumnKind;

use crate::AnyError;
use crate::cli::{EXIT_OK, RetypeArgs};
use crate::summary;

/// Runs `tapline retype` on the SQLite file `--warehouse` names.
pub async fn retype(args: RetypeArgs) -> Result<u8, AnyError> {
    let warehouse = tapline::warehouse::open::open_sqlite(&args.warehouse.warehouse).await?;
    let changes = warehouse.retype().await?;
    if changes.is_empty() {
        println!("Every column's kind already fits its values: nothing changed.");
        return Ok(EXIT_OK);
    }
    let kind = |k: Option<ColumnKind>| k.map_or("(none)", ColumnKind::as_str).to_string();
    let rows: Vec<Vec<String>> = changes
        .iter()
        .map(|c| vec![c.table.clone(), c.column.clone(), kind(c.was), kind(c.now)])
        .collect();
    print!(
        "{}",
        summary::table(&["table", "column", "was", "now"], &rows)
    );
    let mut tables: Vec<&str> = changes.iter().map(|c| c.table.as_str()).collect();
    tables.dedup();
    println!(
        "\n{} column(s) re-typed in {} table(s); their typed views (bi_*) were rebuilt.",
        changes.len(),
        tables.len()
    );
    Ok(EXIT_OK)
}
