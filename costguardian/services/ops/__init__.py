"""Operations: backup archives of the whole database and their restore
(`flask backup` / `flask restore`, the scheduled backup task)."""
