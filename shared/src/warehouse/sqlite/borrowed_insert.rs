//! A prepared row insert whose text parameters SQLite reads in place (`SQLITE_STATIC`) instead
//! of copying: rusqlite binds every text as `SQLITE_TRANSIENT`, a malloc and a copy per field
//! on the load's writer thread. The borrow checker keeps bound text alive: the statement holds
//! a borrow of it (`'t`) until it is dropped.

use std::ffi::{CStr, CString, c_int};
use std::marker::PhantomData;
use std::ptr;

use rusqlite::{Connection, ffi};

/// One prepared statement on `conn` whose text parameters borrow `'t` data.
pub(super) struct BorrowedInsert<'c, 't> {
    conn: &'c Connection,
    stmt: *mut ffi::sqlite3_stmt,
    _text: PhantomData<&'t str>,
}

impl<'c, 't> BorrowedInsert<'c, 't> {
    /// Prepares `sql` (one statement) on `conn`.
    pub(super) fn prepare(conn: &'c Connection, sql: &str) -> rusqlite::Result<Self> {
        let text = CString::new(sql).map_err(|_| rusqlite::Error::InvalidQuery)?;
        let mut stmt = ptr::null_mut();
        // SAFETY: the handle is the live connection `conn` borrows; `text` outlives the call.
        let rc = unsafe {
            ffi::sqlite3_prepare_v2(conn.handle(), text.as_ptr(), -1, &mut stmt, ptr::null_mut())
        };
        let insert = Self {
            conn,
            stmt,
            _text: PhantomData,
        };
        if rc != ffi::SQLITE_OK || stmt.is_null() {
            return Err(insert.error(rc));
        }
        Ok(insert)
    }

    /// Binds parameter `index` (1-based) to `value` without a copy; `None` is NULL.
    pub(super) fn bind_borrowed(
        &mut self,
        index: usize,
        value: Option<&'t str>,
    ) -> rusqlite::Result<()> {
        match value {
            // SAFETY: `'t` outlives the statement, so the bytes outlive every step reading them.
            Some(text) => self.bind_text(index, text, ffi::SQLITE_STATIC()),
            // SAFETY: a live statement; the index is checked by SQLite.
            None => self.check(unsafe { ffi::sqlite3_bind_null(self.stmt, index as c_int) }),
        }
    }

    /// Binds parameter `index` to a copy of `text` (for text that does not live as long).
    pub(super) fn bind_copied(&mut self, index: usize, text: &str) -> rusqlite::Result<()> {
        self.bind_text(index, text, ffi::SQLITE_TRANSIENT())
    }

    /// Binds parameter `index` to an integer.
    pub(super) fn bind_int(&mut self, index: usize, value: i64) -> rusqlite::Result<()> {
        // SAFETY: a live statement; the index is checked by SQLite.
        self.check(unsafe { ffi::sqlite3_bind_int64(self.stmt, index as c_int, value) })
    }

    /// Runs the statement once (an insert returns no rows) and resets it for the next row.
    pub(super) fn execute(&mut self) -> rusqlite::Result<()> {
        // SAFETY: a live statement whose bound texts are alive (see `bind_borrowed`).
        let rc = unsafe { ffi::sqlite3_step(self.stmt) };
        let result = if rc == ffi::SQLITE_DONE {
            Ok(())
        } else {
            Err(self.error(rc))
        };
        // SAFETY: a live statement. The step's outcome is already taken.
        unsafe { ffi::sqlite3_reset(self.stmt) };
        result
    }

    fn bind_text(
        &mut self,
        index: usize,
        text: &str,
        destructor: ffi::sqlite3_destructor_type,
    ) -> rusqlite::Result<()> {
        let len = c_int::try_from(text.len()).map_err(|_| {
            rusqlite::Error::SqliteFailure(ffi::Error::new(ffi::SQLITE_TOOBIG), None)
        })?;
        // SAFETY: a live statement; `text` is valid UTF-8 of `len` bytes, read in place only
        // while it lives (SQLITE_STATIC, see `bind_borrowed`) or copied now (SQLITE_TRANSIENT).
        let rc = unsafe {
            ffi::sqlite3_bind_text(
                self.stmt,
                index as c_int,
                text.as_ptr().cast(),
                len,
                destructor,
            )
        };
        self.check(rc)
    }

    fn check(&self, rc: c_int) -> rusqlite::Result<()> {
        if rc == ffi::SQLITE_OK {
            Ok(())
        } else {
            Err(self.error(rc))
        }
    }

    fn error(&self, rc: c_int) -> rusqlite::Error {
        // SAFETY: the live connection's message, copied before any other call on it.
        let message = unsafe {
            let text = ffi::sqlite3_errmsg(self.conn.handle());
            (!text.is_null()).then(|| CStr::from_ptr(text).to_string_lossy().into_owned())
        };
        rusqlite::Error::SqliteFailure(ffi::Error::new(rc), message)
    }
}

impl Drop for BorrowedInsert<'_, '_> {
    fn drop(&mut self) {
        // SAFETY: the statement was prepared on `conn`, which is still open, and is finalized
        // once; no bound text is read after this.
        unsafe { ffi::sqlite3_finalize(self.stmt) };
    }
}
