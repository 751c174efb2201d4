//! What can go wrong talking to CleverTap, grouped by what the caller should do about it.
//! No variant holds the passcode: requests carry it in a header that errors never render.

/// A CleverTap API call that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request could not be sent or its answer not received (connection, timeout), after
    /// the bounded retries.
    #[error("{operation}: request failed after {attempts} attempts")]
    Transport {
        /// What was being asked (`GET /1/events.json`).
        operation: String,
        /// Attempts made.
        attempts: u32,
        /// The last client error (it names the URL, never the headers).
        #[source]
        source: reqwest::Error,
    },
    /// CleverTap kept answering 5xx after the bounded retries.
    #[error("{operation}: HTTP {status} after {attempts} attempts: {message}")]
    Server {
        /// What was being asked.
        operation: String,
        /// The last status.
        status: u16,
        /// Attempts made.
        attempts: u32,
        /// The last body's error text.
        message: String,
    },
    /// Throttled (HTTP 429 or body code 1) more often than the retry policy allows.
    #[error("{operation}: still throttled by CleverTap after {attempts} attempts")]
    Throttled {
        /// What was being asked.
        operation: String,
        /// Attempts made.
        attempts: u32,
    },
    /// A cursor page stayed "in progress" (body code 2) longer than the retry policy allows.
    #[error("{operation}: the cursor was still not ready after {attempts} attempts")]
    NotReady {
        /// What was being asked.
        operation: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The account id or passcode was refused.
    #[error("{operation}: CleverTap refused the credentials (HTTP {status}): {message}")]
    Unauthorized {
        /// What was being asked.
        operation: String,
        /// 401 or 403.
        status: u16,
        /// CleverTap's error text.
        message: String,
    },
    /// CleverTap refused the request itself (`{"status":"fail","error":…}`), e.g. "Export not
    /// allowed for this event" for notification events.
    #[error("{operation}: CleverTap refused the request (HTTP {status}, code {code:?}): {message}")]
    Refused {
        /// What was being asked.
        operation: String,
        /// The HTTP status.
        status: u16,
        /// The body's `code`, when it has one.
        code: Option<i64>,
        /// CleverTap's error text.
        message: String,
    },
    /// The answer is not the documented shape.
    #[error("{operation}: unexpected answer: {detail}")]
    Unexpected {
        /// What was being asked.
        operation: String,
        /// What was wrong.
        detail: String,
    },
    /// CleverTap handed back a cursor it had already given: paging would loop forever.
    #[error(
        "{operation}: CleverTap returned cursor {cursor_start}… again at page {page}: stopping"
    )]
    RepeatedCursor {
        /// What was being paged.
        operation: String,
        /// The page (0-based) whose answer repeated a cursor.
        page: u64,
        /// The first characters of the cursor, to find it in CleverTap's logs.
        cursor_start: String,
    },
    /// A slice took more pages than allowed (`CLEVERTAP_MAX_PAGES_PER_SLICE`): CleverTap kept
    /// handing out new cursors.
    #[error(
        "{operation}: still more pages after {limit} pages (the limit per slice, \
         CLEVERTAP_MAX_PAGES_PER_SLICE): stopping"
    )]
    TooManyPages {
        /// What was being paged.
        operation: String,
        /// The limit reached.
        limit: u64,
    },
    /// An answer was larger than allowed (`CLEVERTAP_MAX_RESPONSE_BYTES`); it was not read
    /// further.
    #[error(
        "{operation}: the answer is larger than {limit} bytes (CLEVERTAP_MAX_RESPONSE_BYTES); \
         ask for smaller pages (--batch-size) or raise the limit"
    )]
    ResponseTooLarge {
        /// What was being asked.
        operation: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// A counts request stayed `partial` past its deadline.
    #[error("{operation}: the count was still partial after {seconds} s")]
    Deadline {
        /// What was being asked.
        operation: String,
        /// The deadline.
        seconds: u64,
    },
    /// A campaign's report has no result yet (the campaign has not completed): try later.
    #[error("{operation}: no result yet: {message}")]
    ResultNotReady {
        /// What was being asked.
        operation: String,
        /// CleverTap's text.
        message: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client")]
    Client(#[source] reqwest::Error),
}

impl ApiError {
    /// Whether the same call may succeed later without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        match self {
            ApiError::Transport { .. }
            | ApiError::Server { .. }
            | ApiError::Throttled { .. }
            | ApiError::NotReady { .. }
            | ApiError::ResultNotReady { .. }
            | ApiError::Deadline { .. } => true,
            ApiError::Unauthorized { .. }
            | ApiError::Refused { .. }
            | ApiError::Unexpected { .. }
            | ApiError::RepeatedCursor { .. }
            | ApiError::TooManyPages { .. }
            | ApiError::ResponseTooLarge { .. }
            | ApiError::Client(_) => false,
        }
    }
}
