//! The hub's signing keys (sealed at rest).

use super::*;

#[async_trait::async_trait]
pub trait KeyStore: Send + Sync {
    /// Every signing key that has not retired.
    async fn signing_keys(&self) -> Result<Vec<KeyRecord>, StoreError>;
    /// Inserts or replaces keys (by kid), and deletes `retired` ones, atomically.
    async fn put_signing_keys(
        &self,
        keys: Vec<KeyRecord>,
        retired: Vec<String>,
    ) -> Result<(), StoreError>;
}

#[async_trait::async_trait]
impl<B: Backend> KeyStore for TableStore<B> {
    async fn signing_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let sealing = self.sealing.clone();
        self.read(move |tables| {
            page(tables, Table::Keys, &[], &[], usize::MAX, |value| {
                decode_record(&sealing, Table::Keys, value)
            })
        })
        .await
    }

    async fn put_signing_keys(
        &self,
        records: Vec<KeyRecord>,
        retired: Vec<String>,
    ) -> Result<(), StoreError> {
        let sealing = self.sealing.clone();
        self.write(move |tables| {
            for record in &records {
                tables.insert(
                    Table::Keys,
                    record.kid.as_bytes(),
                    &encode_record(&sealing, Table::Keys, record)?,
                )?;
            }
            for kid in &retired {
                tables.remove(Table::Keys, kid.as_bytes())?;
            }
            Ok(())
        })
        .await
    }
}
