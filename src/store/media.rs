//! The store's view of received files (`EventSink::save_media`): kept as a
//! row and a file, named by an id, found again by the API and the relay
//! link.

use phonerelay_channel::ChannelKind;

/// A file an endpoint received, to be kept.
#[derive(Clone, PartialEq, Eq)]
pub struct NewMedia {
    pub channel: ChannelKind,
    pub phone_id: String,
    pub content_type: Option<String>,
    pub filename: Option<String>,
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for NewMedia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewMedia")
            .field("channel", &self.channel)
            .field("phone_id", &self.phone_id)
            .field("content_type", &self.content_type)
            .field("filename", &self.filename)
            .field("bytes", &format_args!("<{} bytes>", self.bytes.len()))
            .finish()
    }
}

/// A kept file's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRecord {
    /// A UUIDv7, as inbound ids are; also the file's name.
    pub id: String,
    pub channel: ChannelKind,
    pub phone_id: String,
    pub content_type: Option<String>,
    pub filename: Option<String>,
    pub size: u64,
    /// Lower-case hex SHA-256 of the bytes.
    pub sha256: String,
    pub created_at_ms: i64,
    /// Where the relay keeps its copy, once uploaded: a retry or a restart
    /// sends this instead of uploading again.
    pub relay_url: Option<String>,
    /// The inbound message that carries it, once one was committed.
    pub inbound_id: Option<String>,
    /// The base URL of the relay `relay_url` is on: after a re-pair to
    /// another relay, the file is uploaded to that one.
    pub relay_base: Option<String>,
    /// Its failed uploads, counted at one relay; `None` if none failed.
    pub upload_failures: Option<UploadFailures>,
}

/// The failed uploads of a kept file to one relay (timeouts, 5xx): after
/// `relay.upload_give_up_after` its message goes without it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadFailures {
    /// The base URL of the relay they failed at.
    pub relay_base: String,
    pub count: u32,
    /// The error code of the last one (`relay_timeout`, `relay_http_503`).
    pub last_code: String,
}

/// What [`crate::store::Store::save_media`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaSaved {
    /// The file and its row are durable. Boxed: a row is large beside the
    /// other answers.
    Saved(Box<MediaRecord>),
    /// Over `storage.max_media_bytes` (0: no file is kept); nothing was
    /// written.
    TooLarge { size: u64, limit: u64 },
    /// Within `storage.max_media_bytes`, but there is no room for it
    /// (`reason`); nothing was written.
    NoRoom { size: u64, reason: MediaRefusal },
}

/// Why a file within `storage.max_media_bytes` is not kept: files are
/// optional, and must never take the room the store needs to commit.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum MediaRefusal {
    /// The kept files would pass `storage.max_media_total_bytes`.
    TotalCap,
    /// It would leave less than `storage.media_min_free_bytes` free on
    /// the store's filesystem.
    LowDisk,
}

impl MediaRefusal {
    /// As it is serialized: the `reason` label of
    /// `phonerelay_media_refused`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TotalCap => "total_cap",
            Self::LowDisk => "low_disk",
        }
    }
}

/// A kept file's bytes, read as they are needed.
pub type MediaReader = Box<dyn tokio::io::AsyncRead + Send + Unpin>;

/// What [`crate::store::Store::open_media`] found.
pub enum MediaContent {
    /// No such row.
    Missing,
    /// The row is there but its file is not, or not whole: a store put
    /// back from a backup, which holds no files (`phonerelay restore`).
    Gone(MediaRecord),
    /// The row and its file, `record.size` bytes long.
    Found(MediaRecord, MediaReader),
    /// The row is there but its file cannot be opened (its permissions, a
    /// bad sector): what the file system said. Told apart from the row's
    /// read failing, which is the store's (`Err`), because only this file
    /// waits for an operator.
    Unreadable(MediaRecord, String),
}

/// What the start-up sweep of the media folder found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediaSweep {
    /// Files without a row (a crash between writing the file and
    /// committing its row) and unfinished temporary files, removed.
    pub orphans_removed: usize,
    /// Rows whose file is not there (a restored backup): served as gone,
    /// and no longer counted against `storage.max_media_total_bytes`.
    pub rows_without_file: usize,
}
