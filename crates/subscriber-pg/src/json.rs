//! JSON values as PostgreSQL sends and takes them, without a detour through `serde_json::Value`:
//! the store already holds the encoded bytes.

use std::error::Error;

use postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};

/// The `jsonb` binary format's only version: one byte before the JSON text.
const JSONB_VERSION: u8 = 1;

/// Encoded JSON text, as a `json` or `jsonb` value.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Json<'a>(pub &'a [u8]);

impl<'a> FromSql<'a> for Json<'a> {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        if *ty != Type::JSONB {
            return Ok(Json(raw));
        }
        match raw.split_first() {
            Some((&JSONB_VERSION, text)) => Ok(Json(text)),
            Some((v, _)) => Err(format!("unsupported jsonb format version {v}").into()),
            None => Err("empty jsonb value".into()),
        }
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSON || *ty == Type::JSONB
    }
}

impl ToSql for Json<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        if *ty == Type::JSONB {
            out.extend_from_slice(&[JSONB_VERSION]);
        }
        out.extend_from_slice(self.0);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSON || *ty == Type::JSONB
    }

    to_sql_checked!();
}
